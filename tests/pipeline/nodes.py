"""The pipeline's node ids as the tests expect them (analyzer cache off; on, it adds its resolver)."""

NODES = frozenset(
    {
        "ImportSchemaGen",
        "WindowIngest",
        "Transform",
        "Trainer",
        "LatestBlessedModel",
        "Evaluator",
        "LoadCheck",
        "Pusher",
        "ServingConfigGen",
    }
)
ANALYZER_CACHE_NODES = NODES | {"LatestAnalyzerCache"}
