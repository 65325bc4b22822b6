import type { MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { labRelease } from "../../../lib/lab-release"

/** GET /lab/release: which lab build this is ({"release": "v1" | "v2" | "broken"}). Public. */
export const GET = (_req: MedusaRequest, res: MedusaResponse): void => {
  res.json({ release: labRelease() })
}
