"""Taking models away: ``eossl export`` (timm and ONNX encoder folders), ``eossl finetune`` (a deployable
task model), ``eossl predict`` (tiled inference over whole scenes) and ``eossl embed`` (per-patch
embeddings as GeoParquet). The folders hold weights as safetensors and metadata as JSON only."""
