// An invoice as a PDF, linked from the invoice's page: written in
// TypeScript (guest-sdk-ts), it only reads.
import { GuestError, Request, Response, db } from 'rawalite-guest';
import { Text, page } from './pdf';

type Invoice = {
  number: number;
  issued_on: string;
  due_on: string | null;
  status: string;
  paid_on: string | null;
  tax_rate_bp: number;
  subtotal_cents: number;
  tax_cents: number;
  total_cents: number;
  name: string;
  address: string | null;
};

type Item = {
  position: number;
  description: string;
  quantity: number;
  unit_price_cents: number;
  line_total_cents: number;
};

/** `1,234.50`, as the invoice page shows money. */
export function money(cents: number): string {
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  const units = Math.floor(abs / 100).toString().replace(/\B(?=(\d{3})+$)/g, ',');
  return `${sign}${units}.${(abs % 100).toString().padStart(2, '0')}`;
}

function percent(bp: number): string {
  return `${bp / 100} %`;
}

export function render(req: Request): Response {
  const match = /^\/(\d{1,18})$/.exec(req.path);
  if (!match) throw new GuestError('not-found', 'no such page: the PDF of invoice 7 is /invoices/pdf/7');
  const id = Number(match[1]);
  const invoice = db
    .query<Invoice>(
      'SELECT i.number, i.issued_on, i.due_on, i.status, i.paid_on, i.tax_rate_bp, i.subtotal_cents, ' +
        'i.tax_cents, i.total_cents, c.name, c.address ' +
        'FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.id = ?',
      [id],
    )
    .first();
  if (!invoice) throw new GuestError('not-found', 'no such invoice');
  const items = db.query<Item>(
    'SELECT position, description, quantity, unit_price_cents, line_total_cents ' +
      'FROM invoice_items WHERE invoice_id = ? ORDER BY position',
    [id],
  );
  const company = db.query<{ value: string }>("SELECT value FROM settings WHERE key = 'company_name'").first();

  const title = `Invoice ${invoice.number}`;
  const texts: Text[] = [
    { x: 50, y: 780, size: 20, bold: true, text: title },
    { x: 545, y: 780, size: 12, right: true, text: company?.value ?? '' },
    { x: 50, y: 740, size: 10, bold: true, text: 'Bill to' },
    { x: 50, y: 725, size: 11, text: invoice.name },
  ];
  let y = 710;
  for (const line of (invoice.address ?? '').split('\n').filter((l) => l.trim())) {
    texts.push({ x: 50, y, size: 10, text: line.trim() });
    y -= 14;
  }
  const facts: [string, string | null][] = [
    ['Issued', invoice.issued_on],
    ['Due', invoice.due_on],
    ['Status', invoice.status === 'paid' && invoice.paid_on ? `paid on ${invoice.paid_on}` : invoice.status],
  ];
  let factY = 740;
  for (const [label, value] of facts) {
    if (!value) continue;
    texts.push({ x: 400, y: factY, size: 10, bold: true, text: label }, { x: 545, y: factY, size: 10, right: true, text: value });
    factY -= 14;
  }

  y = Math.min(y, factY) - 30;
  const columns = [
    { x: 50, title: '#' },
    { x: 75, title: 'Description' },
    { x: 380, title: 'Quantity', right: true },
    { x: 460, title: 'Unit price', right: true },
    { x: 545, title: 'Amount', right: true },
  ];
  for (const c of columns) texts.push({ x: c.x, y, size: 10, bold: true, right: c.right, text: c.title });
  y -= 18;
  for (const [i, item] of items.all().entries()) {
    if (y < 120) {
      texts.push({ x: 75, y, size: 10, text: `… and ${items.length - i} more items` });
      y -= 16;
      break;
    }
    const cells = [
      String(item.position),
      item.description.length > 60 ? item.description.slice(0, 59) + '…' : item.description,
      String(item.quantity),
      money(item.unit_price_cents),
      money(item.line_total_cents),
    ];
    columns.forEach((c, i) => texts.push({ x: c.x, y, size: 10, right: c.right, text: cells[i] }));
    y -= 16;
  }
  y -= 10;
  const sums: [string, number, boolean][] = [
    ['Subtotal', invoice.subtotal_cents, false],
    [`Tax ${percent(invoice.tax_rate_bp)}`, invoice.tax_cents, false],
    ['Total', invoice.total_cents, true],
  ];
  for (const [label, cents, bold] of sums) {
    texts.push({ x: 380, y, size: 11, bold, text: label }, { x: 545, y, size: 11, bold, right: true, text: money(cents) });
    y -= 16;
  }

  return Response.bytes('application/pdf', page(`${title}: ${invoice.name}`, texts))
    .withHeader('content-disposition', `inline; filename="invoice-${invoice.number}.pdf"`)
    .withHeader('cache-control', 'private, no-store');
}
