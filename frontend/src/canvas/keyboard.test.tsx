// Keyboard behaviour of the editor: shortcuts act only in the canvas scope (Ctrl+C with text
// selected in a side panel is the browser's copy, not a node copy), arrow-key node moves are
// undoable (one step per run of presses), and the code editor ignores its own external syncs
// (selecting another node of the same type must not count as an edit).
import { EditorView } from '@codemirror/view';
import { cleanup, render } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import CodeMirrorEditor from '../panels/CodeMirrorEditor';
import { useCatalogue } from '../stores/catalogue';
import { useGraph } from '../stores/graph';
import { catalogue } from '../stores/testCatalogue';
import { shortcutFor, type KeyLike } from './useShortcuts';

afterEach(cleanup);

function el(html: string, selector: string): Element {
  document.body.innerHTML = html;
  return document.querySelector(selector) as Element;
}
const key = (k: string, target: EventTarget | null, mod = true): KeyLike => ({ key: k, ctrlKey: mod, metaKey: false, shiftKey: false, altKey: false, target });

describe('shortcutFor', () => {
  it('acts on the canvas and on nothing focused', () => {
    const pane = el('<div class="canvas-wrap"><div class="react-flow__node" tabindex="0"></div></div>', '.react-flow__node');
    expect(shortcutFor(key('c', pane))).toBe('copy');
    expect(shortcutFor(key('c', document.body))).toBe('copy');
    expect(shortcutFor(key('Delete', pane, false))).toBe('delete');
  });

  it('leaves Ctrl+C to the browser when text is selected, and ignores focus in a side panel', () => {
    const pane = el('<div class="canvas-wrap"></div>', '.canvas-wrap');
    expect(shortcutFor(key('c', pane), 'some selected text')).toBeNull();
    const button = el('<aside class="sidepanel"><button>Copy</button></aside>', 'button');
    expect(shortcutFor(key('c', button))).toBeNull();
    expect(shortcutFor(key('a', button))).toBeNull();
    expect(shortcutFor(key('Backspace', button, false))).toBeNull();
    const input = el('<div class="canvas-wrap"><input /></div>', 'input');
    expect(shortcutFor(key('z', input))).toBeNull();
    expect(shortcutFor(key('s', input))).toBe('save'); // save works from anywhere in the editor
  });
});

describe('arrow-key moves', () => {
  beforeEach(() => {
    useCatalogue.getState().setSpecs(Object.values(catalogue));
    useGraph.getState().load(
      { nodes: [{ id: 'a', type: 'input', position: { x: 0, y: 0 }, data: { params: {} } }], edges: [] },
      { flowId: 'f', name: 'F', version: 1 },
    );
  });
  const press = (x: number) => useGraph.getState().onNodesChange([{ id: 'a', type: 'position', position: { x, y: 0 }, dragging: false }]);
  const posX = () => useGraph.getState().nodes[0].position.x;

  it('are one undo step per run of presses, and mark the flow dirty', () => {
    press(5);
    press(10);
    press(15);
    expect(posX()).toBe(15);
    expect(useGraph.getState().dirty).toBe(true);
    useGraph.getState().undo();
    expect(posX()).toBe(0);
    useGraph.getState().redo();
    expect(posX()).toBe(15);
  });

  it('a mouse drag records at its start, not again when it settles', () => {
    useGraph.getState().beginDrag();
    useGraph.getState().onNodesChange([{ id: 'a', type: 'position', position: { x: 40, y: 0 }, dragging: true }]);
    useGraph.getState().onNodesChange([{ id: 'a', type: 'position', position: { x: 50, y: 0 }, dragging: false }]);
    expect(useGraph.getState().history.past).toHaveLength(1);
    press(55); // then an arrow press: its own step
    expect(useGraph.getState().history.past).toHaveLength(2);
    useGraph.getState().undo();
    expect(posX()).toBe(50);
  });
});

describe('CodeMirrorEditor', () => {
  it('reports user edits but not the value changes it is given', () => {
    const onChange = vi.fn();
    const { container, rerender } = render(<CodeMirrorEditor value="first" onChange={onChange} language="json" />);
    rerender(<CodeMirrorEditor value="second node's value" onChange={onChange} language="json" />);
    const view = EditorView.findFromDOM(container.querySelector('.cm-editor') as HTMLElement);
    expect(view?.state.doc.toString()).toBe("second node's value");
    expect(onChange).not.toHaveBeenCalled();
    view?.dispatch({ changes: { from: 0, insert: 'x' } }); // a user keystroke
    expect(onChange).toHaveBeenCalledWith("xsecond node's value");
  });

  it('ties the editable area to a visible label, description and validity', () => {
    const { container, rerender } = render(<CodeMirrorEditor value="" onChange={() => undefined} labelledBy="lbl" describedBy="help" />);
    const content = container.querySelector('.cm-content') as HTMLElement;
    expect(content.getAttribute('aria-labelledby')).toBe('lbl');
    expect(content.getAttribute('aria-describedby')).toBe('help');
    expect(content.getAttribute('aria-invalid')).toBeNull();
    rerender(<CodeMirrorEditor value="" onChange={() => undefined} labelledBy="lbl" describedBy="help err" invalid />);
    expect(content.getAttribute('aria-invalid')).toBe('true');
    expect(content.getAttribute('aria-describedby')).toBe('help err');
  });
});
