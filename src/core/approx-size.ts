/**
 * Approximate heap bytes of a plain value (a page, a stats result), by walking it: cheaper than
 * JSON.stringify, and it never builds one big string (the thing the page rules exist to avoid).
 */
export function approximateBytes(value: unknown): number {
  let total = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node === 'string') total += 16 + node.length * 2;
    else if (node === null || typeof node !== 'object') total += 8;
    else if (Array.isArray(node)) {
      total += 16 + node.length * 8;
      for (const item of node) stack.push(item);
    } else {
      const record = node as Record<string, unknown>;
      for (const key in record) {
        total += 16 + key.length * 2;
        stack.push(record[key]);
      }
    }
  }
  return total;
}
