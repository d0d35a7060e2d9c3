"""Lessons: a CNN course as data (resources/lessons/*.json), checked here without Qt."""

from .lesson import MAX_WORDS, Lesson, LessonError, bundled_lessons, load_lessons, parse_lesson

__all__ = ["MAX_WORDS", "Lesson", "LessonError", "bundled_lessons", "load_lessons", "parse_lesson"]
