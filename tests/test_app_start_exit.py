"""The real app's start and end (cnnplay.app.main.main): the splash card."""

from PySide6.QtWidgets import QSplashScreen


def test_the_splash_card_paints_without_waiting_for_the_window_system(qapp):
    """QSplashScreen's Show event waits up to 1 s for an exposure that cannot come before
    the show returns (every start waited the full second): the card is a plain splash
    window, shown once it has painted."""
    from cnnplay.app.splash import make_splash, show_splash
    splash = make_splash("Starting...")
    assert not isinstance(splash, QSplashScreen)
    show_splash(splash)
    assert splash.painted and splash.isVisible()
    splash.finish(None)
    assert not splash.isVisible()
