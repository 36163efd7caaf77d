"""`llmkit serve`'s parts: what is served (served.py), the dynamic batcher that owns a
generating model (batcher.py), the OpenAI-compatible endpoints (openai_api.py), the task
endpoints (tasks.py), the error shape (errors.py), and the FastAPI app that routes to them
(app.py), with its web page (page.html). The command itself is commands/serve.py."""
