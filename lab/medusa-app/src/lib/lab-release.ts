import { readFileSync } from "fs"

/** File baked into each thin image layer; it wins over the env so tenant env overrides can't fake it. */
const RELEASE_FILE = "/etc/omni-lab-release"

let cached: string | undefined

/** The lab release of this image: "v1", "v2" or "broken" ("unknown" outside the lab images). */
export function labRelease(): string {
  if (cached === undefined) {
    let fromFile = ""
    try {
      fromFile = readFileSync(RELEASE_FILE, "utf8").trim()
    } catch {
      fromFile = ""
    }
    cached = fromFile || process.env.OMNI_LAB_RELEASE || "unknown"
  }
  return cached
}
