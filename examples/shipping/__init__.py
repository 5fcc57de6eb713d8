"""An order whose shipping is a saga of its own: stock is reserved, then a nested saga books a
pickup (carrier A) and a delivery (carrier B), then the order is charged (the pivot). A
refused charge undoes the shipping (the nested saga compensates itself on its parent's word)
and the stock. Built on the engine's public API only: `python -m examples.shipping worker`
runs its worker, `python -m examples.shipping order` places one."""
