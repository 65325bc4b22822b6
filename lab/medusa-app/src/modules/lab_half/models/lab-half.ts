import { model } from "@medusajs/framework/utils"

/** Table `lab_half`: what the migrate-fails release's migration leaves behind before it fails. */
const LabHalf = model.define("lab_half", {
  id: model.id({ prefix: "labhalf" }).primaryKey(),
  text: model.text(),
})

export default LabHalf
