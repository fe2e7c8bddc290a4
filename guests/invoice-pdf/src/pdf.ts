// A one-page PDF of text lines in Helvetica: what an invoice needs, in the
// PDF 1.4 subset every reader opens. The 14 standard fonts need no
// embedding, so the file is a few kilobytes of plain objects.
//
// Written here rather than taken from npm: pdf-lib's `save()` waits on
// timers and jsPDF pulls in DOM packages, and a guest renders synchronously
// with neither (see guest-sdk-ts/index.ts).

/** Points: an A4 page is 595 × 842. */
export interface Text {
  x: number;
  y: number;
  size: number;
  text: string;
  bold?: boolean;
  /** Right-aligned at `x` (for amounts). */
  right?: boolean;
}

/** Helvetica's advance widths (1/1000 em) for ASCII 32-126, to right-align. */
const WIDTHS = [
  278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
  556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
  611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
  667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
  222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

export function width(text: string, size: number, bold = false): number {
  let units = 0;
  for (const c of text) units += WIDTHS[(c.codePointAt(0) ?? 63) - 32] ?? 556;
  // Helvetica-Bold is about 5 % wider; close enough for alignment.
  return (units * size * (bold ? 1.05 : 1)) / 1000;
}

/** WinAnsi's bytes 128-159 that text uses, by character. */
const WIN_ANSI: Record<string, number> = {
  '€': 0x80, '…': 0x85, '‘': 0x91, '’': 0x92, '“': 0x93, '”': 0x94, '•': 0x95, '–': 0x96, '—': 0x97,
};

/** A string literal: WinAnsi bytes, `\`, `(` and `)` escaped; what WinAnsi lacks becomes `?`. */
function literal(text: string): string {
  let out = '(';
  for (const c of text) {
    const code = c.codePointAt(0)!;
    const byte = code >= 160 && code <= 255 ? code : WIN_ANSI[c];
    if (c === '\\' || c === '(' || c === ')') out += '\\' + c;
    else if (code >= 32 && code < 127) out += c;
    else if (byte !== undefined) out += '\\' + byte.toString(8).padStart(3, '0');
    else out += '?';
  }
  return out + ')';
}

const fixed = (n: number): string => (Math.round(n * 100) / 100).toString();

/** The PDF file for one page of `texts`, with `title` in its metadata. */
export function page(title: string, texts: Text[]): Uint8Array {
  let content = '';
  for (const t of texts) {
    const x = t.right ? t.x - width(t.text, t.size, t.bold) : t.x;
    content += `BT /${t.bold ? 'F2' : 'F1'} ${t.size} Tf ${fixed(x)} ${fixed(t.y)} Td ${literal(t.text)} Tj ET\n`;
  }
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R ' +
      '/Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>',
    `<< /Length ${content.length} >>\nstream\n${content}endstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>',
    `<< /Title ${literal(title)} /Producer (RawaLite) >>`,
  ];
  // Every character above is one byte (WinAnsi or ASCII), so string
  // lengths are byte offsets.
  let file = '%PDF-1.4\n%\u00e2\u00e3\u00cf\u00d3\n';
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(file.length);
    file += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = file.length;
  file += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) file += `${offset.toString().padStart(10, '0')} 00000 n \n`;
  file += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /Info ${objects.length} 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  const bytes = new Uint8Array(file.length);
  for (let i = 0; i < file.length; i++) bytes[i] = file.charCodeAt(i);
  return bytes;
}
