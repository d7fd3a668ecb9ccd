"""Necks: trunk features C2..C5 -> a pyramid. FPN (necks.fpn), HRFPN (HQ-ISNet), FACE-FPN and SEM (FACENet)."""
