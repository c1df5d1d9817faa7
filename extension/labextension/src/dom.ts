// A few lines instead of a UI framework: the panel and the dialog are plain DOM.

type Child = Node | string | null | undefined | false;

/** An element with attributes (`on*` functions become listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, any> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'className') {
      node.className = value;
    } else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'readOnly') {
      (node as any)[key] = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    node.append(child);
  }
  return node;
}

/** Replace the children of `node`. */
export function fill(node: Element, ...children: (Child | Child[])[]): void {
  node.replaceChildren(
    ...(children.flat().filter(c => c !== null && c !== undefined && c !== false) as (
      | Node
      | string
    )[])
  );
}
