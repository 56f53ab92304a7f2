// Lighthouse on one page, as phones and desktops get it, with the machine's
// Chromium: `node tools/audit/lighthouse.mjs URL OUT_DIR`.
//
// Runs the mobile profile (Lighthouse's default, with its simulated slow 4G
// and 4x CPU throttling) and the desktop preset, prints each run's scores and
// key metrics, keeps the JSON reports in OUT_DIR, and exits 1 when a bar is
// missed: Accessibility, Best Practices and SEO at 100, Performance at 95 or
// more, and neither "text compression" nor "back/forward cache" flagged.
// The CLI comes from tools/audit/node_modules (`npm ci --prefix tools/audit`).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node tools/audit/lighthouse.mjs URL OUT_DIR");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, "node_modules", "lighthouse", "cli", "index.js");
const chrome = process.env.CHROME_PATH || "/usr/bin/chromium";
// As the browser test starts Chromium: no sandbox (root in CI), and none of
// the background traffic this machine's closed network refuses.
const chromeFlags = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
].join(" ");
const bars = { performance: 95, accessibility: 100, "best-practices": 100, seo: 100 };
// Findings that must not appear, whatever the scores.
const mustPass = ["uses-text-compression", "bf-cache"];
mkdirSync(outDir, { recursive: true });

let failed = 0;
for (const profile of ["mobile", "desktop"]) {
  const report = join(outDir, `lighthouse-${profile}.json`);
  const args = [
    cli, url,
    "--output=json", `--output-path=${report}`, "--quiet",
    `--chrome-path=${chrome}`, `--chrome-flags=${chromeFlags}`,
    `--only-categories=${Object.keys(bars).join(",")}`,
  ];
  if (profile === "desktop") args.push("--preset=desktop");
  // Bounded: a hung browser fails the run instead of holding it.
  execFileSync(process.execPath, args, { stdio: ["ignore", "inherit", "inherit"], timeout: 180_000 });
  const lhr = JSON.parse(readFileSync(report, "utf8"));
  if (lhr.runtimeError) {
    console.log(`audit FAIL: lighthouse ${profile}: ${lhr.runtimeError.code}: ${lhr.runtimeError.message}`);
    failed++;
    continue;
  }
  const score = (id) => Math.round((lhr.categories[id]?.score ?? 0) * 100);
  const metric = (id) => lhr.audits[id]?.numericValue ?? NaN;
  console.log(
    `audit figure: lighthouse ${profile}: ` +
      Object.keys(bars).map((id) => `${id} ${score(id)}`).join(", ") +
      `; FCP ${(metric("first-contentful-paint") / 1000).toFixed(2)} s` +
      `, LCP ${(metric("largest-contentful-paint") / 1000).toFixed(2)} s` +
      `, TBT ${Math.round(metric("total-blocking-time"))} ms` +
      `, CLS ${metric("cumulative-layout-shift").toFixed(3)}` +
      `, transferred ${(metric("total-byte-weight") / 1024).toFixed(1)} KiB`,
  );
  for (const [id, bar] of Object.entries(bars)) {
    const ok = score(id) >= bar;
    if (!ok) failed++;
    console.log(`audit ${ok ? "PASS" : "FAIL"}: lighthouse ${profile}: ${id} ${score(id)} (at least ${bar})`);
    if (!ok) {
      // What cost the points: every weighted audit of the category below 1.
      for (const ref of lhr.categories[id].auditRefs) {
        const audit = lhr.audits[ref.id];
        if (ref.weight > 0 && audit.score !== null && audit.score < 1) {
          console.log(`audit figure:   ${ref.id} (${audit.score}): ${audit.title}${audit.displayValue ? ": " + audit.displayValue : ""}`);
        }
      }
    }
  }
  for (const id of mustPass) {
    const audit = lhr.audits[id];
    const ok = audit && (audit.score === 1 || audit.scoreDisplayMode === "notApplicable");
    if (!ok) failed++;
    console.log(
      `audit ${ok ? "PASS" : "FAIL"}: lighthouse ${profile}: no "${audit?.title ?? id}" finding` +
        (ok ? "" : `: ${audit?.displayValue ?? audit?.explanation ?? "missing from the report"}`),
    );
  }
}
console.log(`audit: lighthouse ${failed === 0 ? "passed" : `${failed} check(s) failed`}`);
process.exit(failed === 0 ? 0 : 1);
