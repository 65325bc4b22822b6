/**
 * lab_note: a tiny custom module that only the lab's v3 release loads (see medusa-config.ts).
 * Its migration creates the table `lab_note`, so `medusa db:migrate` of v3 really changes the
 * schema in a way v1/v2 know nothing about.
 */
import { Module } from "@medusajs/framework/utils"
import LabNoteModuleService from "./service"

export const LAB_NOTE_MODULE = "lab_note"

export default Module(LAB_NOTE_MODULE, {
  service: LabNoteModuleService,
})
