"""Encoder initialisations compared by an evaluation, one file each, registered in
:data:`eossl.evaluation.registry.INITS` (see :class:`eossl.evaluation.inits._base.Init`)."""
