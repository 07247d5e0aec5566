"""Built-in search specs, shipped as package data: `hpsearch list` names them."""
