// Precompressed siblings of the web app's files: FILE.gz (gzip -9) and FILE.br (Brotli,
// quality 11, or B3O_BROTLI_QUALITY: scripts/test.sh's test-only training bundle, 45 MB, takes
// a minute at 11), written next to each FILE given. The server sends FILE.br to browsers that accept
// Brotli and FILE.gz to the others (server/src/static_files.rs), so nothing is compressed per
// request. Node's own zlib: no package to install.
// Usage: node scripts/compress.mjs FILE...
import { readFileSync, writeFileSync } from "node:fs";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const quality = Number(process.env.B3O_BROTLI_QUALITY ?? constants.BROTLI_MAX_QUALITY);

for (const file of process.argv.slice(2)) {
  const bytes = readFileSync(file);
  writeFileSync(`${file}.gz`, gzipSync(bytes, { level: 9 }));
  const text = /\.(js|mjs|css|html|json|webmanifest|ts|svg)$/.test(file);
  writeFileSync(
    `${file}.br`,
    brotliCompressSync(bytes, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: quality,
        [constants.BROTLI_PARAM_LGWIN]: constants.BROTLI_MAX_WINDOW_BITS,
        [constants.BROTLI_PARAM_MODE]: text ? constants.BROTLI_MODE_TEXT : constants.BROTLI_MODE_GENERIC,
        [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      },
    }),
  );
}
