"""Evaluation protocols, one file each, registered in :data:`eossl.evaluation.registry.PROTOCOLS`
(see :class:`eossl.evaluation.protocols._base.Protocol`)."""
