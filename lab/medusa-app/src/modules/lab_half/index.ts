/**
 * lab_half: a custom module that only the lab's migrate-fails release loads (see
 * medusa-config.ts). Its one migration creates the table `lab_half`, then fails on purpose, so
 * `medusa db:migrate` exits non-zero half-way. `medusa start` does not run migrations and works.
 */
import { Module } from "@medusajs/framework/utils"
import LabHalfModuleService from "./service"

export const LAB_HALF_MODULE = "lab_half"

export default Module(LAB_HALF_MODULE, {
  service: LabHalfModuleService,
})
