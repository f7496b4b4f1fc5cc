// CSV in and out, in the page (no upload): RFC 4180 parsing and formula-safe writing.

// Rows of fields from CSV (or TSV) text: quoted fields may hold the delimiter, quotes ("")
// and line breaks. A leading byte-order mark is dropped; blank lines are skipped.
export function parseCsv(text, delimiter = null) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (delimiter === null) {
    const firstLine = text.slice(0, text.search(/\r?\n|$/));
    delimiter = firstLine.includes("\t") && !firstLine.includes(",") ? "\t" : ",";
  }
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === delimiter) { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); field = "";
      if (row.length > 1 || row[0] !== "") rows.push(row);
      row = [];
    } else field += c;
  }
  if (quoted) throw new Error("the file ends inside a quoted field (a \" is not closed)");
  row.push(field);
  if (row.length > 1 || row[0] !== "") rows.push(row);
  return rows;
}

// [{id, response}] from an answers file with a header row holding "response" (and "id").
export function readAnswers(text, fileName) {
  const rows = parseCsv(text);
  if (rows.length === 0) throw new Error(`${fileName} is empty.`);
  const header = rows[0].map((h) => h.trim().toLowerCase());
  const col = header.indexOf("response");
  if (col < 0) {
    throw new Error(`${fileName}: the header row has no "response" column (it has: ${rows[0].join(", ")}). ` +
      `Give the file a header row such as: id,response`);
  }
  const idCol = header.indexOf("id");
  return rows.slice(1).map((r, i) => ({
    id: idCol >= 0 && r[idCol] !== undefined ? r[idCol] : String(i + 1),
    response: r[col] ?? "",
  }));
}

// A cell a spreadsheet could run as a formula (= + - @, or tab / carriage return first) gets a
// leading apostrophe. Plain numbers such as -1 or 0.25 are left as they are.
export function neutralise(cell) {
  const s = String(cell);
  if (/^-?\d+(\.\d+)?$/.test(s)) return s;
  return /^[=+\-@\t\r]/.test(s) ? "'" + s : s;
}

function quote(cell) {
  const s = neutralise(cell);
  return /[",\r\n]/.test(s) ? '"' + s.replaceAll('"', '""') + '"' : s;
}

export function toCsv(rows) {
  return rows.map((r) => r.map(quote).join(",")).join("\r\n") + "\r\n";
}
