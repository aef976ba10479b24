"""The fixed word list of pairing codes: 256 short, distinct, easy-to-say English words.

Each word carries 8 bits. The list is part of the wire format (both ends must hold the same
one), so it never changes order; a new list would be a new code version.
"""

from __future__ import annotations

_TEXT = (  # one string: a list literal would be 256 lines
    """
    acorn actor adapt admit adult agent alarm album alert alien amber angle ankle apple
    april apron arena armor arrow atlas attic audio aunt autumn avoid awake bacon badge
    baker bamboo banjo barn basil basket beach beard beaver bench berry bicycle bingo bison
    blade blanket blossom board bonus border bottle boxer brain brave bread brick bridge
    brush bubble bucket buffalo bundle butter cabin cactus camel camera candle canoe canvas
    carbon cargo carpet carrot castle cattle cedar cement cherry chess chicken cider
    circle citrus clock cloud clover cobalt cocoa coffee comet copper coral cotton
    cougar cousin coyote crab crane crayon cricket crystal curtain daisy
    dancer delta denim desert diamond dinner doctor dolphin donkey dragon drawer dream drum
    eagle earth easel echo eclipse elbow elder ember engine escape falcon farmer
    feather fence ferry fiddle finger flame flute forest fossil fox frost galaxy
    garden garlic gecko giant ginger glacier globe goblet gold gorilla gravel guitar hammer
    harbor harvest hazel helmet heron honey horizon hotel hunter igloo island ivory
    jacket jaguar jelly jigsaw jungle kayak kettle kitten koala ladder lagoon lantern laptop
    lemon leopard letter lizard lobster magnet mango maple marble meadow melon mirror
    monkey mosaic motor muffin napkin nectar needle nickel noodle oasis ocean olive
    onion orange orbit orchid otter owl paddle palace panda parrot pastry peach pebble
    pelican pencil pepper piano pillow pirate planet pocket potato puzzle quartz rabbit
    radar radio raven ribbon river robot rocket saddle salmon sandal satin scarf
    silver spider spoon squid summer sunset tiger toast tomato tractor
    trumpet tulip turtle velvet violin volcano walnut walrus
    """
)
WORDS: tuple[str, ...] = tuple(_TEXT.split())

if len(WORDS) != 256 or len(set(WORDS)) != 256:  # pragma: no cover - a broken edit
    raise RuntimeError(f"pairing word list: {len(WORDS)} words, {len(set(WORDS))} distinct")
