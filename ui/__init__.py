"""The clipsearch web app (Gradio). ``ui.app.build_app(library)`` builds it; ``ui.app.launch(library)`` serves it.

Nothing is imported here, so ``import ui`` stays cheap; the app module imports Gradio.
"""
