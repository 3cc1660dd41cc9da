// Validates every dashboard in deploy/dashboards against Grafana's published dashboard type:
// `Dashboard` of @grafana/schema (the classic JSON model Grafana saves and the sidecar loads),
// turned into a JSON Schema by ts-json-schema-generator (no extra properties allowed, as the
// type has none) and checked with Ajv. Then what the schema cannot say: every panel and target
// uses the dashboard's data source variable, ids are unique, panels fit the 24-column grid, and
// every variable the queries use is defined. No Grafana server can be installed here.
//   node check.mjs   (npm ci first)
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { createGenerator } from "ts-json-schema-generator";
import Ajv from "ajv";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const typesFile = join(
  dirname(require.resolve("@grafana/schema/package.json")),
  "dist/types/raw/dashboard/x/types.gen.d.ts",
);
const schema = createGenerator({ path: typesFile, type: "Dashboard", skipTypeCheck: true }).createSchema("Dashboard");
const version = JSON.parse(readFileSync(require.resolve("@grafana/schema/package.json"))).version;
const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(schema);

const folder = join(here, "..");
const files = readdirSync(folder).filter((f) => f.endsWith(".json"));
if (files.length === 0) {
  console.error(`no dashboard in ${folder}`);
  process.exit(1);
}
let failed = false;
for (const file of files) {
  const problems = [];
  const dashboard = JSON.parse(readFileSync(join(folder, file), "utf8"));
  if (!validate(dashboard)) {
    for (const e of validate.errors) problems.push(`schema: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  }
  const variables = new Set((dashboard.templating?.list ?? []).map((v) => v.name));
  const builtIn = new Set(["__rate_interval", "__interval", "__range"]);
  const ids = new Set();
  const panels = (dashboard.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
  for (const p of panels) {
    if (ids.has(p.id)) problems.push(`panel id ${p.id} used twice`);
    ids.add(p.id);
    const g = p.gridPos;
    if (!g || g.x < 0 || g.w < 1 || g.x + g.w > 24) problems.push(`panel ${p.id} (${p.title}): outside the 24-column grid`);
    if (p.type === "row") continue;
    if (p.datasource?.uid !== "${datasource}") problems.push(`panel ${p.id} (${p.title}): not on the \${datasource} variable`);
    if (!p.targets?.length) problems.push(`panel ${p.id} (${p.title}): no query`);
    for (const t of p.targets ?? []) {
      if (t.datasource?.uid !== "${datasource}") problems.push(`panel ${p.id} target ${t.refId}: not on the \${datasource} variable`);
      if (!t.expr?.trim()) problems.push(`panel ${p.id} target ${t.refId}: empty query`);
      for (const [, name] of (t.expr ?? "").matchAll(/\$\{?(\w+)/g)) {
        if (!variables.has(name) && !builtIn.has(name)) problems.push(`panel ${p.id} target ${t.refId}: unknown variable $${name}`);
      }
    }
  }
  for (const name of ["datasource", "cluster", "namespace", "pod"]) {
    if (!variables.has(name)) problems.push(`no $${name} variable`);
  }
  if (problems.length) {
    failed = true;
    console.error(`${file}: ${problems.length} problem(s)\n  ${problems.join("\n  ")}`);
  } else {
    const queries = panels.reduce((n, p) => n + (p.targets?.length ?? 0), 0);
    console.log(`${file}: valid against @grafana/schema ${version} Dashboard; ${panels.filter((p) => p.type !== "row").length} panels, ${queries} queries`);
  }
}
process.exit(failed ? 1 : 0);
