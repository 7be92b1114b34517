"""Graph analysis of a flow definition: adjacency, roots, cycle detection.

`FlowGraph.build(defn)` indexes nodes and edges once; the planner asks it for `incoming(node)` and
`outgoing(node)`; the validator asks `find_cycle()`; `output_nodes` names the nodes whose outputs are
the run's. Instances are immutable and cached per pinned flow version by the engine
(`engine/flowcache.py`), since versions never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowstudio.flows.model import Edge, FlowDefinition, Node


@dataclass(frozen=True, eq=False)
class FlowGraph:
    definition: FlowDefinition
    nodes: dict[str, Node]
    incoming_edges: dict[str, list[Edge]] = field(default_factory=dict)
    outgoing_edges: dict[str, list[Edge]] = field(default_factory=dict)
    output_nodes: tuple[str, ...] = ()  # the `output` nodes, in definition order (a run's outputs)

    @classmethod
    def build(cls, defn: FlowDefinition) -> FlowGraph:
        nodes = {n.id: n for n in defn.nodes}
        inc: dict[str, list[Edge]] = {n.id: [] for n in defn.nodes}
        out: dict[str, list[Edge]] = {n.id: [] for n in defn.nodes}
        for e in defn.edges:
            if e.source in nodes and e.target in nodes:
                out[e.source].append(e)
                inc[e.target].append(e)
        outputs = tuple(n.id for n in defn.nodes if n.type == "output")
        return cls(defn, nodes, inc, out, outputs)

    def incoming(self, node_id: str) -> list[Edge]:
        return self.incoming_edges[node_id]

    def outgoing(self, node_id: str) -> list[Edge]:
        return self.outgoing_edges[node_id]

    def predecessors(self, node_id: str) -> list[str]:
        return list(dict.fromkeys(e.source for e in self.incoming_edges[node_id]))

    def feeds_output(self, node_id: str) -> bool:
        """Whether an edge goes from this node straight into an `output` node (its text is the
        answer a chat client waits for: LLM nodes stream it by default)."""
        return any(self.nodes[e.target].type == "output" for e in self.outgoing_edges[node_id])

    def roots(self) -> list[str]:
        return [n for n, edges in self.incoming_edges.items() if not edges]

    def find_cycle(self) -> list[str] | None:
        """A list of node ids forming a cycle, or None (iterative DFS, no recursion limit; linear in
        nodes + edges, since each adjacency list is walked by index, never rebuilt)."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.nodes, white)
        parent: dict[str, str] = {}
        for start in self.nodes:
            if color[start] != white:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            color[start] = grey
            while stack:
                node, idx = stack[-1]
                succ = self.outgoing_edges[node]  # walked by index: each edge seen once
                if idx < len(succ):
                    stack[-1] = (node, idx + 1)
                    nxt = succ[idx].target
                    if color[nxt] == grey:
                        cycle = [nxt]
                        cur = node
                        while cur != nxt:
                            cycle.append(cur)
                            cur = parent[cur]
                        return list(reversed(cycle))
                    if color[nxt] == white:
                        color[nxt] = grey
                        parent[nxt] = node
                        stack.append((nxt, 0))
                else:
                    color[node] = black
                    stack.pop()
        return None
