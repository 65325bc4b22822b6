import { model } from "@medusajs/framework/utils"

/** Table `lab_note`: exists only in databases migrated by the lab's v3 release. */
const LabNote = model.define("lab_note", {
  id: model.id({ prefix: "labnote" }).primaryKey(),
  text: model.text(),
})

export default LabNote
