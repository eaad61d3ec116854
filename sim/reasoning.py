"""Chain-of-Causation texts of the synthetic fleet: what the ego does, then why.

A text is an action clause, a connector ("since", "because", "as") and a cause clause, e.g.
"Stop at the stop line since the traffic light is red."; an action that waits for an event
the ego anticipates uses "once": "Accelerate once the light turns green." The action clause
states the meta-action in words that `models.meta_actions.stated` recognises; the cause clause
names the cause with a clear keyword that `cause_of` recognises. Several phrasings of each part
exist and one is chosen deterministically from a seed.
"""

import hashlib
import re

CAUSES = ("red_light", "green_light", "lead_vehicle", "turn_only_lane", "curve", "pedestrian", "clear_road")

CONNECTORS = ("since", "because", "as")
STANDING_SPEED = 0.3  # m/s, the meta-action speed deadband
SLOW_SPEED = 3.0  # m/s

_STOP = {  # (cause, still moving) -> ways to say "stop"
    ("red_light", True): ("Stop at the stop line", "Come to a stop at the stop line", "Stop before the intersection"),
    ("red_light", False): ("Stay stopped at the stop line", "Remain stopped at the stop line", "Wait at the stop line"),
    ("pedestrian", True): ("Stop before the crosswalk", "Come to a stop before the crosswalk", "Stop and yield at the crosswalk"),
    ("pedestrian", False): ("Stay stopped before the crosswalk", "Remain stopped", "Wait before the crosswalk"),
    ("lead_vehicle", True): ("Stop behind the vehicle ahead", "Come to a stop behind the lead vehicle", "Stop in the lane"),
    ("lead_vehicle", False): ("Stay stopped behind the vehicle ahead", "Remain stopped", "Wait in the lane"),
}
_LONGITUDINAL = {
    "stop": {True: ("Stop", "Come to a stop", "Stop smoothly"), False: ("Stay stopped", "Remain stopped", "Wait")},
    "decelerate": ("Decelerate", "Slow down", "Reduce speed"),
    "keep_speed": ("Keep speed", "Maintain the current speed", "Keep a steady speed"),
    "accelerate": ("Accelerate", "Speed up", "Pick up speed"),
}
_ACCELERATE = {
    "green_light": ("Accelerate through the intersection", "Accelerate and proceed through the intersection",
                    "Speed up and proceed through the intersection"),
    "pedestrian": ("Accelerate and proceed", "Speed up and continue", "Pick up speed again"),
}
_LATERAL = {
    "lane_change_left": ("Change lanes to the left", "Move into the left lane", "Change to the left lane"),
    "lane_change_right": ("Change lanes to the right", "Move into the right lane", "Change to the right lane"),
    "turn_left": ("Turn left", "Make a left turn", "Turn left at the intersection"),
    "turn_right": ("Turn right", "Make a right turn", "Turn right at the intersection"),
}
_KEEP_SLOW = ("Keep speed low", "Keep the current speed low", "Keep speed low and steady")
_LINK = {"stop": "come to a stop", "decelerate": "slow down", "keep_speed": "keep speed", "accelerate": "accelerate"}
_KEEP_LANE = ("", " and keep lane", " in the current lane")

_CAUSE_CLAUSES = {
    ("red_light", "*"): ("the traffic light is red", "the light ahead is red", "the signal at the intersection is red"),
    ("red_light", "far"): ("the red light ahead is still far away", "the red light is still some distance ahead",
                           "the stop line at the red light is still far ahead"),
    ("green_light", "*"): ("the light turned green", "the traffic light is now green", "the signal has changed to green"),
    ("green_light", "pending"): ("the light turns green", "the signal changes to green", "the traffic light turns green"),
    ("lead_vehicle", "*"): ("a slower lead vehicle is ahead in the lane", "the lead vehicle ahead is moving slower",
                            "a slower vehicle is ahead"),
    ("lead_vehicle", "far"): ("the slower vehicle ahead is still far away", "the slower vehicle is still some distance ahead",
                              "the lead vehicle is still far ahead"),
    ("lead_vehicle", "opening"): ("the lead vehicle ahead is pulling away", "the gap to the lead vehicle is growing",
                                  "the lead vehicle ahead sped up"),
    ("lead_vehicle", "overtake"): ("a slower lead vehicle is ahead in the lane", "the lead vehicle ahead is too slow",
                                   "a slower vehicle is blocking the lane"),
    ("lead_vehicle", "passing"): ("the ego is overtaking the slower vehicle", "the slower vehicle is being passed",
                                  "the ego is passing a slower vehicle"),
    ("turn_only_lane", "*"): ("the current lane ahead is a right-turn-only lane",
                                  "the current lane becomes turn-only at the intersection",
                                  "the lane ahead is marked right-turn-only"),
    ("turn_only_lane", "straight"): ("the right lane is turn-only and the route goes straight",
                                     "the right-turn-only lane is to the right", "the lane to the right is turn-only"),
    ("curve", "*"): ("a sharp curve is ahead", "the road curves sharply ahead", "a tight curve is coming up"),
    ("curve", "far"): ("the curve ahead is still some distance away", "the sharp curve is still far ahead",
                       "the road curves only further ahead"),
    ("curve", "in"): ("the road is curving", "the ego is in a tight curve", "the curve continues"),
    ("curve", "exit"): ("the curve is ending", "the road straightens after the curve", "the curve is behind"),
    ("pedestrian", "*"): ("a pedestrian is at the crosswalk ahead", "a pedestrian is crossing or about to cross ahead",
                          "a pedestrian is using the crosswalk ahead"),
    ("pedestrian", "far"): ("the pedestrian at the crosswalk is still far ahead",
                            "the pedestrian crossing is still some distance ahead",
                            "the pedestrian is still far away at the crosswalk"),
    ("pedestrian", "pending"): ("the pedestrian has crossed", "the pedestrian has left the crosswalk",
                                "the pedestrian is off the road"),
    ("pedestrian", "cleared"): ("the pedestrian has crossed", "the pedestrian has left the crosswalk",
                                "the pedestrian is off the road"),
    ("clear_road", "*"): ("the road ahead is clear", "there are no obstacles ahead", "the lane ahead is clear"),
    ("clear_road", "return"): ("the road ahead is clear", "there are no obstacles in the right lane", "the right lane is clear"),
}

_CAUSE_PATTERNS = (
    ("green_light", r"\bgreen\b"),
    ("red_light", r"\bred\b"),
    ("turn_only_lane", r"\bturn[- ]only\b|\bturning only\b"),
    ("pedestrian", r"\bpedestrians?\b"),
    ("lead_vehicle", r"\b(?:lead|leading|slower|slow) (?:vehicle|car)\b|\b(?:vehicle|car) ahead\b"),
    ("curve", r"\bcurv(?:e|es|ing)\b|\bbend\b"),
    ("clear_road", r"\bclear\b|\bno obstacles?\b"),
)
_CAUSE_RES = tuple((cause, re.compile(p, re.IGNORECASE)) for cause, p in _CAUSE_PATTERNS)
_SPLIT = re.compile(r"\b(?:since|because|as|due to|given that)\b", re.IGNORECASE)


def _pick(options, seed: int, salt: str) -> str:
    digest = hashlib.sha256(f"{seed}\x00{salt}".encode()).digest()
    return options[int.from_bytes(digest[:4], "little") % len(options)]


def cause_clauses(cause: str, phase: str) -> tuple[str, ...]:
    """Ways to name the cause in this phase (a cause's "*" entry serves its other phases)."""
    if cause not in CAUSES:
        raise ValueError(f"unknown cause {cause!r}; expected one of {CAUSES}")
    return _CAUSE_CLAUSES.get((cause, phase)) or _CAUSE_CLAUSES[(cause, "*")]


def pace(speed: float) -> str:
    """"standing", "slow" or "moving": what the ego's current speed (m/s) is in words."""
    return "standing" if speed < STANDING_SPEED else ("slow" if speed < SLOW_SPEED else "moving")


def action_clauses(cause: str, longitudinal: str, lateral: str, speed: float) -> tuple[str, ...]:
    """Ways to say the meta-action (longitudinal, lateral) in this context."""
    moving = pace(speed) != "standing"
    if longitudinal == "stop":
        base = _STOP.get((cause, moving)) or _LONGITUDINAL["stop"][moving]
    elif longitudinal == "keep_speed" and pace(speed) == "slow":
        base = _KEEP_SLOW
    elif longitudinal == "accelerate" and cause in _ACCELERATE:
        base = _ACCELERATE[cause]
    else:
        base = _LONGITUDINAL[longitudinal]
    if lateral in _LATERAL:
        return tuple(f"{lat} and {_LINK[longitudinal]}" for lat in _LATERAL[lateral])
    return tuple(b + k for b in base for k in _KEEP_LANE if not (" and " in b and " and " in k))


def reasoning_text(cause: str, phase: str, longitudinal: str, lateral: str, speed: float, seed: int) -> str:
    """One Chain-of-Causation text for a truth phase at the ego's current `speed`, chosen by `seed`."""
    action = _pick(action_clauses(cause, longitudinal, lateral, speed), seed, "action")
    connector = "once" if phase == "pending" else _pick(CONNECTORS, seed, "connector")
    return f"{action} {connector} {_pick(cause_clauses(cause, phase), seed, 'cause')}."


def cause_of(text: str) -> str | None:
    """The cause a reasoning text names (one of CAUSES), or None.

    The cause clause (after "since", "because", ...) is searched first, then the whole text;
    the earliest keyword wins."""
    parts = _SPLIT.split(text, maxsplit=1)
    for part in ([parts[1]] if len(parts) == 2 else []) + [text]:
        hits = [(m.start(), cause) for cause, pattern in _CAUSE_RES for m in [pattern.search(part)] if m]
        if hits:
            return min(hits)[1]
    return None
