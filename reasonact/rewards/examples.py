"""Example completions for SynthAct-like clips: the tests', the benchmark's and the inspector's demo.

``MINI_LIBRARY`` is six SynthAct classes (same phase and sub-action names as the HMDB51 library
entries SynthAct renders) so unit tests and demos need neither the full library nor a download.
``example_completion(record, action, kind)`` writes a template chain of the kind a teacher
produces: one "Frames a-b:" sentence per phase with its sub-actions, a conclusion and the answer;
``kind`` makes the variants the rewards must rank (good > shuffled > missing > wrong).
"""

from __future__ import annotations

import random
from pathlib import Path

from reasonact.library import Action, Library, load_library
from reasonact.library.grammar import NO_SUBJECT
from reasonact.rewards.gt import ground_truth

KINDS = ("good", "shuffled", "unbound", "missing", "wrong")
MINI_LIBRARY = """\
dataset: hmdb51
actions:
  jump:
    description: A standing vertical jump - crouch, drive up off both feet, fly, land softly.
    aliases: [jumping, vertical jump, hop]
    phases:
    - name: crouch
      share: 0.3
      sub_actions:
        knee_flexion: [bends the knees, sinks down into a crouch, knees flex as the body lowers]
        arm_backswing: [swings both arms back, draws the arms behind the hips]
    - name: takeoff
      share: 0.2
      sub_actions:
        leg_extension: [straightens the legs explosively, drives up by extending the knees and hips]
        arm_upswing: [swings the arms up overhead, throws both arms upward]
    - name: flight
      share: 0.25
      sub_actions:
        airborne: [both feet leave the ground, is in the air]
        knee_tuck: [pulls the knees up, tucks the legs under the body]
    - name: landing
      share: 0.25
      sub_actions:
        foot_contact: [feet touch down on the ground, lands on both feet]
        landing_absorption: [bends the knees to absorb the landing, cushions the impact by flexing the legs]
  kick:
    description: A front kick - balance on one leg, chamber the knee, snap the foot out, retract.
    aliases: [kicking, front kick]
    phases:
    - name: setup
      share: 0.25
      sub_actions:
        weight_shift_to_support_leg: [shifts the weight onto the standing leg, balances on one foot]
        arm_counterbalance: [holds the arms out for balance, raises the arms to stay balanced]
    - name: chamber
      share: 0.25
      sub_actions:
        knee_chamber: [lifts the kicking knee up high, draws the knee up toward the chest]
        hip_flexion: [flexes the hip to raise the thigh, brings the thigh forward and up]
    - name: strike
      share: 0.25
      sub_actions:
        kicking_leg_extension: [snaps the lower leg forward, extends the kicking leg straight out]
        foot_strike: [the foot strikes out in front, hits forward with the foot]
    - name: recovery
      share: 0.25
      sub_actions:
        leg_retraction: [pulls the kicking leg back in, retracts the leg after the kick]
        foot_return: [puts the kicking foot back down, returns the foot to the ground]
  wave:
    description: A hand wave - raise the arm, wave the hand side to side, lower the arm.
    aliases: [waving, waving hello, hand wave]
    phases:
    - name: arm_raise
      share: 0.25
      sub_actions:
        arm_raise: [raises one arm up, lifts the hand above the shoulder]
        elbow_bend: [bends the elbow with the hand up, holds the forearm upright]
    - name: waving
      share: 0.5
      sub_actions:
        hand_side_to_side: [moves the hand side to side, waves the hand back and forth]
        forearm_oscillation: [the forearm swings left and right, rocks the forearm from the elbow]
    - name: arm_lower
      share: 0.25
      sub_actions:
        arm_lowering: [lowers the arm back down, drops the hand to the side]
        arms_at_sides: [ends with the arms hanging at the sides, returns to a relaxed stance]
  clap:
    description: Clapping - open the hands apart, bring the palms together, repeat.
    aliases: [clapping, applauding, hand clap]
    phases:
    - name: hands_apart
      share: 0.3
      sub_actions:
        arms_open: [holds the hands apart in front of the chest, opens the arms wide]
        palms_facing: [turns the palms to face each other, keeps the palms facing]
    - name: hands_together
      share: 0.4
      sub_actions:
        hands_converge: [brings the hands toward each other, moves the palms together]
        palms_contact: [the palms strike together, claps the hands]
    - name: repeat_claps
      share: 0.3
      sub_actions:
        rhythmic_clapping: [claps again and again in rhythm, keeps clapping repeatedly]
        hands_rebound: [the hands bounce apart after each clap, separates the palms again]
  sit:
    description: Sitting down - from standing, lean forward, bend hips and knees, lower onto the seat.
    aliases: [sitting, sitting down, sit down]
    phases:
    - name: standing
      share: 0.25
      sub_actions:
        upright_stance: [stands upright, is standing tall with straight legs]
        arms_relaxed: [arms hang relaxed at the sides, keeps the arms loose by the body]
    - name: lowering
      share: 0.45
      sub_actions:
        torso_lean_forward: [leans the torso forward, tips the upper body forward over the feet]
        hip_flexion: [bends at the hips, folds at the waist]
        knee_flexion: [bends the knees, the knees flex as the body goes down]
    - name: seated
      share: 0.3
      sub_actions:
        seated_posture: [is sitting on the seat, sits with thighs horizontal]
        torso_upright_seated: [straightens the back while seated, sits up with the torso upright]
  stand:
    description: Standing up - from sitting, lean forward, extend hips and knees, rise to upright.
    aliases: [standing, standing up, stand up, getting up]
    phases:
    - name: seated
      share: 0.3
      sub_actions:
        seated_posture: [is sitting on the seat, sits with thighs horizontal]
        torso_upright_seated: [sits with the torso upright, has the back straight while seated]
    - name: rising
      share: 0.45
      sub_actions:
        torso_lean_forward: [leans the torso forward, tips the upper body forward over the feet]
        knee_extension: [straightens the knees, extends the legs]
        hip_extension: [extends the hips, pushes the hips forward and up]
    - name: standing
      share: 0.25
      sub_actions:
        upright_stance: [stands upright, is standing tall with straight legs]
        arms_relaxed: [arms hang relaxed at the sides, keeps the arms loose by the body]
"""

_SUBJECTS = ("the person", "the figure", "he")
_FILLERS = (
    "The figure stays near the centre of the frame.",
    "The background does not change.",
    "The movement is smooth and continuous.",
    "Nothing else moves in the scene.",
)


def mini_library(directory: str | Path) -> Library:
    """Write MINI_LIBRARY to ``directory/hmdb51.yaml`` and load it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hmdb51.yaml").write_text(MINI_LIBRARY, encoding="utf-8")
    return load_library(directory)


def synthetic_record(
    action: Action, duration_s: float = 3.2, fps: int = 10, jitter: float = 0.0, seed: int = 0
) -> dict:
    """A SynthAct-like manifest record for ``action`` (phase windows from its shares, optionally
    jittered), without rendering anything."""
    rng = random.Random(seed)
    shares = [p.share * (1 + rng.uniform(-jitter, jitter)) for p in action.phases]
    total, t, phases = sum(shares), 0.0, []
    for p, s in zip(action.phases, shares):
        d = duration_s * s / total
        phases.append(
            {
                "name": p.name,
                "start_s": round(t, 3),
                "end_s": round(t + d, 3),
                "sub_actions": [x.name for x in p.sub_actions],
            }
        )
        t += d
    phases[-1]["end_s"] = round(duration_s, 3)
    return {
        "label": action.label,
        "dataset": "synthact",
        "fps": fps,
        "num_frames": int(round(duration_s * fps)),
        "duration_s": duration_s,
        "phases": phases,
    }


def phase_frames(record: dict, lib: Library | None = None) -> list[tuple[int, int]]:
    """Per phase, the 1-based range of sampled frames whose time cell centre lies in its window."""
    gt = ground_truth(record, lib)
    centres = (gt.edges[:-1] + gt.edges[1:]) / 2
    out = []
    for p in gt.phases:
        idx = [k + 1 for k, c in enumerate(centres) if p.start <= c < p.end] or [1]
        out.append((min(idx), max(idx)))
    return out


def example_completion(
    record: dict,
    action: Action,
    kind: str = "good",
    seed: int = 0,
    wrong_label: str = "kick",
    process_aware: bool = False,
    fillers: int = 0,
) -> str:
    """A template chain for ``record`` (see the module docstring); ``fillers`` adds neutral
    sentences (the benchmark's ~150-word completions)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = random.Random(seed)
    label = action.label.replace("_", " ")
    frames = phase_frames(record)
    sentences = []
    for (a, b), phase in zip(frames, action.phases):
        parts = [rng.choice(s.phrasings) for s in phase.sub_actions]
        body = ", ".join(parts[:-1]) + (", and " if len(parts) > 1 else "") + parts[-1]
        if not NO_SUBJECT.match(parts[0]):
            body = f"{rng.choice(_SUBJECTS)} {body}"
        head = "" if kind == "unbound" else f"Frames {a}-{b}: " if a != b else f"Frame {a}: "
        sentences.append(head + (body[0].upper() + body[1:] if not head else body) + ".")
        sentences.extend(rng.sample(_FILLERS, min(fillers, len(_FILLERS))))
    if kind == "shuffled":
        sentences = sentences[::-1]  # a fixed derangement for the phase sentences: reversed time
    if kind == "missing":
        sentences = ["The person moves around during the clip.", "The motion is hard to make out."]
    conclusion = {"wrong": "", "missing": f"It looks like {label}."}.get(
        kind,
        f"The order {' then '.join(p.name.replace('_', ' ') for p in action.phases)} is typical of {label}.",
    )
    think = " ".join(sentences + ([conclusion] if conclusion else []))
    answer = wrong_label if kind == "wrong" else label
    if process_aware:
        obs = " ".join(sentences)
        return (
            f"<observation>{obs}</observation><think>{conclusion or 'The movements follow each other.'}"
            f"</think><answer>{answer}</answer>"
        )
    return f"<think>{think}</think><answer>{answer}</answer>"


# Hand-written sentences (not library phrasings), labelled with the sub-actions they describe, for
# measuring detection precision and recall: (action label, sentence, sub-action names).
LABELLED_SENTENCES = (
    ("jump", "He bends his knees and lowers his hips into a squat.", ("knee_flexion",)),
    ("jump", "Both arms are pulled back behind the body.", ("arm_backswing",)),
    ("jump", "The legs extend powerfully to push off the floor.", ("leg_extension",)),
    ("jump", "His arms swing forward and up above his head.", ("arm_upswing",)),
    ("jump", "Now the figure is off the ground, floating in mid-air.", ("airborne",)),
    ("jump", "The knees are drawn up towards the chest.", ("knee_tuck",)),
    ("jump", "The feet come back down and touch the floor.", ("foot_contact",)),
    ("jump", "He flexes his legs to soften the impact.", ("landing_absorption",)),
    ("jump", "He squats down, swinging his arms behind him.", ("knee_flexion", "arm_backswing")),
    ("sit", "The person is standing straight at first.", ("upright_stance",)),
    ("sit", "The arms hang loosely by the sides.", ("arms_relaxed",)),
    ("sit", "The upper body tilts forward.", ("torso_lean_forward",)),
    ("sit", "She bends at the waist.", ("hip_flexion",)),
    ("sit", "The knees bend as the body goes down toward the chair.", ("knee_flexion",)),
    ("sit", "Finally she is seated on the chair.", ("seated_posture",)),
    ("sit", "While seated, the back is kept straight.", ("torso_upright_seated",)),
    ("stand", "At the start the person sits on a chair.", ("seated_posture",)),
    ("stand", "The legs straighten as he rises.", ("knee_extension",)),
    ("stand", "The hips push forward and upward.", ("hip_extension",)),
    ("stand", "He leans his chest forward over his feet.", ("torso_lean_forward",)),
    ("stand", "He ends up standing tall.", ("upright_stance",)),
    ("wave", "She lifts her right arm above shoulder height.", ("arm_raise",)),
    ("wave", "The elbow is bent so the forearm points up.", ("elbow_bend",)),
    ("wave", "The hand moves left and right repeatedly.", ("hand_side_to_side",)),
    ("wave", "The forearm rocks back and forth from the elbow.", ("forearm_oscillation",)),
    ("wave", "Then the arm comes back down.", ("arm_lowering",)),
    ("wave", "In the end both arms hang by the body.", ("arms_at_sides",)),
    ("kick", "He balances on his left leg.", ("weight_shift_to_support_leg",)),
    ("kick", "The arms are held out to keep balance.", ("arm_counterbalance",)),
    ("kick", "The right knee comes up high toward the chest.", ("knee_chamber",)),
    ("kick", "The thigh is raised forward.", ("hip_flexion",)),
    ("kick", "The lower leg snaps out straight.", ("kicking_leg_extension",)),
    ("kick", "The foot hits forward.", ("foot_strike",)),
    ("kick", "He pulls the kicking leg back.", ("leg_retraction",)),
    ("kick", "The foot is set back down on the floor.", ("foot_return",)),
    ("clap", "The hands are held apart in front of the body.", ("arms_open",)),
    ("clap", "The palms face one another.", ("palms_facing",)),
    ("clap", "The hands move toward each other.", ("hands_converge",)),
    ("clap", "The palms hit together.", ("palms_contact",)),
    ("clap", "She keeps clapping in a steady rhythm.", ("rhythmic_clapping",)),
    ("clap", "After each clap the hands spring apart.", ("hands_rebound",)),
    # sentences that name two sub-actions
    ("jump", "He sinks into a squat and pulls both arms back behind him.", ("knee_flexion", "arm_backswing")),
    (
        "jump",
        "The legs straighten hard while the arms swing up over the head.",
        ("leg_extension", "arm_upswing"),
    ),
    (
        "jump",
        "Both feet hit the floor, and the knees give to cushion the landing.",
        ("foot_contact", "landing_absorption"),
    ),
    ("sit", "She tips her upper body forward and bends her knees.", ("torso_lean_forward", "knee_flexion")),
    (
        "stand",
        "He leans forward, then pushes up by straightening his legs.",
        ("torso_lean_forward", "knee_extension"),
    ),
    ("wave", "He raises his hand and waves it from side to side.", ("arm_raise", "hand_side_to_side")),
    (
        "kick",
        "Standing on one leg, she brings her knee up to her chest.",
        ("weight_shift_to_support_leg", "knee_chamber"),
    ),
    (
        "clap",
        "The hands come together and the palms smack against each other.",
        ("hands_converge", "palms_contact"),
    ),
    ("kick", "The leg shoots out and then is pulled back in.", ("kicking_leg_extension", "leg_retraction")),
    ("clap", "She opens her arms wide with the palms facing each other.", ("arms_open", "palms_facing")),
)
# Sentences about no sub-action; each is checked in every action's context.
NEGATIVE_SENTENCES = (
    "There is no other object in view.",
    "The scene is lit evenly.",
    "The video quality is low.",
    "I will describe each part of the motion.",
    "The clip lasts only a few seconds.",
    "The stick figure is white.",
    "The frame rate looks steady.",
    "This needs careful attention.",
)
