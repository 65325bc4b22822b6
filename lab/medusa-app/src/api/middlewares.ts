import { defineMiddlewares } from "@medusajs/framework/http"
import type { MedusaNextFunction, MedusaRequest, MedusaResponse } from "@medusajs/framework/http"
import { labRelease } from "../lib/lab-release"

/**
 * The "broken" lab build boots, migrates and serves, but its health check always answers 503,
 * so omni's failure paths (deploy health gate, rollback) see a running yet unhealthy container.
 * Custom middlewares are mounted before Medusa's own GET /health, so this one shadows it.
 */
const unhealthy = (_req: MedusaRequest, res: MedusaResponse, _next: MedusaNextFunction): void => {
  res.status(503).json({ status: "unhealthy", release: labRelease() })
}

export default defineMiddlewares({
  routes: labRelease() === "broken" ? [{ matcher: "/health", middlewares: [unhealthy] }] : [],
})
