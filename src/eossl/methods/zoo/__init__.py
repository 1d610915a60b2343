"""The method zoo: one file per method (or family), holding its config and its LightningModule,
registered in :data:`eossl.methods.registry.METHODS`. Every module here is imported when the registry
is first read, so adding a method is adding a file (and its test)."""
