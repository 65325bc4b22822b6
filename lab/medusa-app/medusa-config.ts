/**
 * omni lab Medusa app: every setting comes from the environment (no .env file is read).
 *
 * DATABASE_URL, REDIS_URL, JWT_SECRET, COOKIE_SECRET, STORE_CORS, ADMIN_CORS, AUTH_CORS,
 * MEDUSA_BACKEND_URL; PORT and HOST (bind address) are read by `medusa start` itself.
 *
 * When REDIS_URL is set it is the project redisUrl AND backs the event bus, cache, workflow
 * engine and locking modules, as in production: a dead Redis breaks the app the same way.
 *
 * The lab release (/etc/omni-lab-release, else OMNI_LAB_RELEASE) adds one custom module:
 *   v3             src/modules/lab_note: its migration creates the table `lab_note`
 *   migrate-fails  src/modules/lab_half: its migration creates `lab_half`, then fails
 * v1, v2 and broken load no custom module, so their `db:migrate` creates neither table.
 */
import { defineConfig, Modules } from "@medusajs/framework/utils"
import { labRelease } from "./src/lib/lab-release"

const redisUrl = process.env.REDIS_URL

const redisModules = redisUrl
  ? [
      {
        key: Modules.EVENT_BUS,
        resolve: "@medusajs/medusa/event-bus-redis",
        options: { redisUrl },
      },
      {
        key: Modules.CACHE,
        resolve: "@medusajs/medusa/cache-redis",
        options: { redisUrl },
      },
      {
        key: Modules.WORKFLOW_ENGINE,
        resolve: "@medusajs/medusa/workflow-engine-redis",
        options: { redis: { redisUrl } },
      },
      {
        key: Modules.LOCKING,
        resolve: "@medusajs/medusa/locking",
        options: {
          providers: [
            {
              id: "locking-redis",
              resolve: "@medusajs/medusa/locking-redis",
              is_default: true,
              options: { redisUrl },
            },
          ],
        },
      },
    ]
  : []

const releaseModules: Record<string, { resolve: string }[]> = {
  v3: [{ resolve: "./src/modules/lab_note" }],
  "migrate-fails": [{ resolve: "./src/modules/lab_half" }],
}
const labModules = releaseModules[labRelease()] ?? []

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: process.env.DATABASE_URL,
    redisUrl,
    workerMode: (process.env.MEDUSA_WORKER_MODE as "shared" | "worker" | "server") || "shared",
    http: {
      storeCors: process.env.STORE_CORS || "",
      adminCors: process.env.ADMIN_CORS || "",
      authCors: process.env.AUTH_CORS || "",
      jwtSecret: process.env.JWT_SECRET,
      cookieSecret: process.env.COOKIE_SECRET,
    },
  },
  admin: {
    disable: true,
    backendUrl: process.env.MEDUSA_BACKEND_URL,
  },
  modules: [...redisModules, ...labModules],
})
