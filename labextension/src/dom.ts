/**
 * A tiny element builder: the panel is plain DOM inside Lumino widgets, so
 * it needs no React, and this keeps the view code short and declarative.
 */

export type Child = Node | string | number | null | undefined | false;

/** Attributes; `on*` functions become listeners, `false`/`undefined` are left out. */
export type Props = {
  [name: string]:
    string | number | boolean | undefined | ((event: any) => void);
};

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (typeof value === 'function') {
      node.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'class') {
      node.className = String(value);
    } else if (value === true) {
      node.setAttribute(name, '');
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

/** Append children, turning strings and numbers into text nodes. */
export function append(node: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    node.appendChild(
      typeof child === 'object' ? child : document.createTextNode(String(child))
    );
  }
}

/** Replace all of a node's children. */
export function replaceChildren(node: Element, ...children: Child[]): void {
  while (node.firstChild) {
    node.removeChild(node.firstChild);
  }
  append(node, children);
}

/**
 * Rebuilds parts of a view only when what they show changed (compared as
 * JSON), so a poll each second does not replace buttons under the pointer.
 */
export class PartCache {
  /** Rebuild `node` from `build()` if `data` differs from its last build. */
  update(node: Element, name: string, data: unknown, build: () => Child[]): void {
    const key = JSON.stringify(data);
    if (this._keys.get(name) !== key) {
      this._keys.set(name, key);
      replaceChildren(node, ...build());
    }
  }

  /** Forget a part, so that its next update rebuilds it. */
  forget(name: string): void {
    this._keys.delete(name);
  }

  private readonly _keys = new Map<string, string>();
}
