"""The pipeline's node ids: ``pipeline.pipeline`` gives them; the runner and the run summary find
a component's progress and outputs by them. One home, so a renamed node cannot quietly break either
(the load check's early server would simply not start, or a summary line would go missing)."""

IMPORT_SCHEMA = "ImportSchemaGen"
WINDOW_INGEST = "WindowIngest"
ANALYZER_CACHE = "LatestAnalyzerCache"
TRANSFORM = "Transform"
BASELINE = "LatestBlessedModel"
TRAINER = "Trainer"
EVALUATOR = "Evaluator"
LOAD_CHECK = "LoadCheck"
PUSHER = "Pusher"
SERVING_CONFIG = "ServingConfigGen"
