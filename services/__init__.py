"""The three downstream HTTP services the checkout saga calls: orders, inventory, payments."""
