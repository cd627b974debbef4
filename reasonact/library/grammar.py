"""Sentences built around the library's phrasings: the grammar the sub-action detector is calibrated on.

A phrasing ("bends the knees") becomes a sentence a model might write by adding a subject and a frame
reference ("In frames 3-6, the person bends the knees."); ``FILLERS`` are sentences that name no
sub-action. The detector's threshold calibration (``rewards/subaction.py``) and the static encoder's
training corpus (``library/static.py``) both use them.
"""

import re

SUBJECTS = ("the person", "the figure", "he", "she", "the man", "the athlete")
TEMPLATES = (
    "{S} {p}.",
    "In frames {a}-{b}, {s} {p}.",
    "Next, {s} {p}.",
    "We can see that {s} {p}.",
    "At this point {s} {p}, which is typical of the movement.",
    "Frames {a}-{b}: {s} {p}.",
)
NO_SUBJECT = re.compile(
    r"^(?:the|both|his|her|their|its|one|a|an|each|arms?|hands?|feet|legs?|is|are|has)\b", re.IGNORECASE
)
FILLERS = (
    "The video shows a person in a plain room.",
    "The background is dark and does not change.",
    "The camera stays still throughout the clip.",
    "The figure is drawn as white lines on a black background.",
    "Let me look at the frames carefully.",
    "I need to identify the action.",
    "The person is in the centre of the frame.",
    "The lighting is constant.",
    "The motion is smooth.",
    "Nothing else moves in the scene.",
    "There is only one person in the video.",
    "The clip is short.",
    "Overall the movement is quick.",
    "The colours stay the same in every frame.",
    "Let me think about which action fits best.",
    "The sequence is consistent from start to end.",
    "It is hard to see details because the figure is small.",
    "The image is a bit noisy.",
    "So the answer is {label}.",
    "This sequence matches {label}.",
    "The whole clip shows {label}.",
)
