import { MedusaService } from "@medusajs/framework/utils"
import LabNote from "./models/lab-note"

class LabNoteModuleService extends MedusaService({ LabNote }) {}

export default LabNoteModuleService
