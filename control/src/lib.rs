//! vipd control plane: configuration, snapshot building, neighbours, API and metrics.
