import { MedusaService } from "@medusajs/framework/utils"
import LabHalf from "./models/lab-half"

class LabHalfModuleService extends MedusaService({ LabHalf }) {}

export default LabHalfModuleService
