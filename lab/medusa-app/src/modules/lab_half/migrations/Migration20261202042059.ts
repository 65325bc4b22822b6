// Starts as `medusa db:generate lab_half` (Medusa 2.21.2) made it, then fails on purpose.
import { Migration } from "@medusajs/framework/mikro-orm/migrations"

export class Migration20261202042059 extends Migration {
  /**
   * Not transactional: MikroORM then runs each statement on its own (autocommit), outside the
   * master transaction of `db:migrate`, so the table created before the failure stays behind,
   * as a real half-applied migration would. The migration itself is never recorded as done in
   * `mikro_orm_migrations`, so every `db:migrate` runs it again and fails the same way.
   */
  override isTransactional(): boolean {
    return false
  }

  override async up(): Promise<void> {
    this.addSql(`create table if not exists "lab_half" ("id" text not null, "text" text not null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), "deleted_at" timestamptz null, constraint "lab_half_pkey" primary key ("id"));`)
    this.addSql(`CREATE INDEX IF NOT EXISTS "IDX_lab_half_deleted_at" ON "lab_half" ("deleted_at") WHERE deleted_at IS NULL;`)
    this.addSql(`DO $$ BEGIN RAISE EXCEPTION 'omni lab: the migrate-fails release fails half-way on purpose (lab_half created)'; END $$;`)
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "lab_half" cascade;`)
  }
}
