"""One job of a sweep: data, network, LightningModule, training and its status file."""
