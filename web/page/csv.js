// CSV in and out, in the page (no upload): encodings and delimiters people's files use, RFC 4180
// parsing, and formula-safe writing.

const DELIMITERS = { ",": "comma", ";": "semicolon", "\t": "tab" };

// Text and the name of its encoding from a file's bytes: a byte-order mark (UTF-8, UTF-16 LE/BE),
// UTF-16 without one (every other byte zero), else UTF-8 when the bytes are valid UTF-8, else
// Windows-1252 (what Excel on Windows saves as "CSV" in Western Europe).
export function decodeBytes(buffer) {
  const bytes = new Uint8Array(buffer);
  const bom = (a, b, c) => bytes[0] === a && bytes[1] === b && (c === undefined || bytes[2] === c);
  if (bom(0xef, 0xbb, 0xbf)) return { text: new TextDecoder("utf-8").decode(bytes.subarray(3)), encoding: "UTF-8" };
  if (bom(0xff, 0xfe)) return { text: new TextDecoder("utf-16le").decode(bytes.subarray(2)), encoding: "UTF-16" };
  if (bom(0xfe, 0xff)) return { text: new TextDecoder("utf-16be").decode(bytes.subarray(2)), encoding: "UTF-16" };
  const sample = bytes.subarray(0, 4096);
  let evenZeros = 0, oddZeros = 0;
  for (let i = 0; i < sample.length; i++) if (sample[i] === 0) (i % 2 ? oddZeros++ : evenZeros++);
  if (sample.length >= 4 && oddZeros > sample.length / 4) return { text: new TextDecoder("utf-16le").decode(bytes), encoding: "UTF-16" };
  if (sample.length >= 4 && evenZeros > sample.length / 4) return { text: new TextDecoder("utf-16be").decode(bytes), encoding: "UTF-16" };
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), encoding: "UTF-8" };
  } catch {
    return { text: new TextDecoder("windows-1252").decode(bytes), encoding: "Windows-1252" };
  }
}

// The delimiter of a file: the one whose header row has a "response" column, else the one the
// header row uses most.
export function detectDelimiter(text) {
  const firstLine = text.slice(0, text.search(/\r?\n|$/));
  const candidates = Object.keys(DELIMITERS);
  for (const d of candidates) {
    const header = parseCsv(firstLine, d)[0] || [];
    if (header.some((h) => h.trim().toLowerCase() === "response")) return d;
  }
  const count = (d) => firstLine.split(d).length - 1;
  return candidates.reduce((best, d) => (count(d) > count(best) ? d : best), ",");
}

// Rows of fields from CSV (or TSV) text: quoted fields may hold the delimiter, quotes ("")
// and line breaks. A leading byte-order mark is dropped; blank lines are skipped. A field is quoted
// when it starts with a quote; text after its closing quote, up to the delimiter, is kept as it is.
// Scans for the next special character and slices, rather than building fields a character at a
// time: 50,000 rows take tens of milliseconds, so the page does not freeze.
export function parseCsv(text, delimiter = null) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (delimiter === null) delimiter = detectDelimiter(text);
  const d = delimiter.charCodeAt(0);
  const n = text.length;
  const rows = [];
  let row = [];
  let i = 0;
  for (;;) {
    let field = "";
    if (text.charCodeAt(i) === 34) {            // a quoted field: up to the quote not followed by another
      let from = i + 1;
      for (;;) {
        const q = text.indexOf('"', from);
        if (q < 0) throw new Error("the file ends inside a quoted field (a \" is not closed)");
        field += text.slice(from, q);
        if (text.charCodeAt(q + 1) !== 34) { i = q + 1; break; }
        field += '"';
        from = q + 2;
      }
    }
    let k = i;
    for (let c = text.charCodeAt(k); k < n && c !== d && c !== 10 && c !== 13; c = text.charCodeAt(++k));
    row.push(field + text.slice(i, k));
    if (k < n && text.charCodeAt(k) === d) { i = k + 1; continue; }
    if (row.length > 1 || row[0] !== "") rows.push(row);   // end of a line, or of the text
    row = [];
    if (k >= n) return rows;
    i = text.charCodeAt(k) === 13 && text.charCodeAt(k + 1) === 10 ? k + 2 : k + 1;
    if (i >= n) return rows;
  }
}

// Text from a file, made safe to show in a message: control characters become "?", at most `max` characters.
export function printable(text, max = 40) {
  const clean = String(text).replace(/[\u0000-\u001f\u007f-\u009f\ufffd]/g, "?");
  return clean.length > max ? clean.slice(0, max) + "…" : clean;
}

// {answers: [{id, response}], notes: [what a teacher should know]} from an answers file's text, with
// a header row holding "response" (and "id"). Rows without an id get "row N" (N: their row in the file;
// made unlike every id the file has); empty and repeated ids are reported (the results keep every row, in order).
export function readAnswers(text, fileName, encoding = "UTF-8") {
  const delimiter = detectDelimiter(text);
  const rows = parseCsv(text, delimiter);
  if (rows.length === 0) throw new Error(`${printable(fileName)} is empty.`);
  const header = rows[0].map((h) => h.trim().toLowerCase());
  const col = header.indexOf("response");
  if (col < 0) {
    const shown = rows[0].slice(0, 8).map((h) => `"${printable(h)}"`).join(", ") + (rows[0].length > 8 ? ", …" : "");
    throw new Error(`${printable(fileName)}: the header row has no "response" column (read as ${encoding}, ` +
      `${DELIMITERS[delimiter]}-separated, it has: ${shown}). Give the file a header row such as: id,response`);
  }
  const idCol = header.indexOf("id");
  const given = (r) => idCol >= 0 && r[idCol] !== undefined && r[idCol].trim() !== "";
  const ids = new Set(rows.slice(1).filter(given).map((r) => r[idCol]));
  const rowId = (row) => {
    let id = `row ${row}`;
    while (ids.has(id)) id += " (no id)";
    return id;
  };
  const answers = rows.slice(1).map((r, i) => ({
    id: given(r) ? r[idCol] : rowId(i + 2),
    response: r[col] ?? "",
    row: i + 2,
    noId: idCol >= 0 && !given(r),
  }));
  const notes = [`Read as ${encoding}, ${DELIMITERS[delimiter]}-separated.`];
  if (encoding === "Windows-1252") {
    notes.push("The file is not UTF-8, so it was read as Windows-1252 (Western European): check that accented " +
      "letters look right below, or save the file as \"CSV UTF-8\".");
  }
  const missing = answers.filter((a) => a.noId).map((a) => a.row);
  if (missing.length) {
    notes.push(`${missing.length} row(s) have no id (row${missing.length > 1 ? "s" : ""} ${missing.slice(0, 5).join(", ")}` +
      `${missing.length > 5 ? ", …" : ""}): they are named by their row ("row ${missing[0]}").`);
  }
  const seen = new Map();
  answers.forEach((a) => seen.set(a.id, (seen.get(a.id) || 0) + 1));
  const repeated = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  if (repeated.length) {
    notes.push(`${repeated.length} id(s) appear more than once (${repeated.slice(0, 5).map((id) => `"${printable(id, 20)}"`).join(", ")}` +
      `${repeated.length > 5 ? ", …" : ""}): every row is scored, in file order.`);
  }
  return { answers: answers.map(({ id, response }) => ({ id, response })), notes };
}

// A cell a spreadsheet could run as a formula gets a leading apostrophe: one that starts with = + - @ (or
// their full-width forms ＝ ＋ － ＠) after any spaces or line breaks, or with a tab or carriage return.
// Plain numbers such as -1, 0.25 or -2e3 are left as they are.
const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
export function neutralise(cell) {
  const s = String(cell);
  if (NUMBER.test(s)) return s;
  return /^[\t\r]/.test(s) || /^[\s\u3000]*[=+\-@\uff1d\uff0b\uff0d\uff20]/.test(s) ? "'" + s : s;
}

function quote(cell) {
  const s = neutralise(cell);
  return /[",\r\n]/.test(s) ? '"' + s.replaceAll('"', '""') + '"' : s;
}

export function toCsv(rows) {
  return rows.map((r) => r.map(quote).join(",")).join("\r\n") + "\r\n";
}
