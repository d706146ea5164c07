"""English sentences for fitting and judging the embedded codec (kame's own text, no data set).

    train_sentences(n, seed)  -> n generated sentences (questions, statements, numbers)
    HELD_OUT                  -> 120 hand-written sentences, never produced by the generator

The generator fills templates from small word lists; ``HELD_OUT`` uses other templates and
words so the two sets are disjoint (tests/codec/test_embedded.py checks it).
"""

from __future__ import annotations

import random

_NAMES = ["Anna", "Ben", "Carla", "David", "Elena", "Frank", "Grace", "Hiro", "Ingrid", "Jamal",
          "Kofi", "Laura", "Marco", "Nina", "Oscar", "Priya", "Rosa", "Sam", "Tomas", "Wendy"]
_PLACES = ["the station", "the library", "the market", "the harbour", "the old bridge", "the museum",
           "the airport", "the hospital", "the bakery", "the garden", "the office", "the beach"]
_THINGS = ["umbrella", "bicycle", "laptop", "guitar", "kettle", "notebook", "camera", "ticket",
           "blanket", "ladder", "lamp", "radio", "basket", "jacket", "map", "phone"]
_ADJ = ["red", "heavy", "broken", "shiny", "small", "enormous", "quiet", "expensive", "wooden",
        "strange", "useful", "ancient", "green", "soft"]
_VERBS = ["found", "bought", "lost", "borrowed", "painted", "repaired", "carried", "sold", "hid",
          "cleaned", "packed", "returned"]
_TIMES = ["yesterday", "this morning", "last week", "on Monday", "at noon", "after dinner",
          "before sunrise", "in the spring", "every evening", "tonight"]
_TOPICS = ["the weather", "the election", "the new bridge", "the football match", "the recipe",
           "the concert", "quantum physics", "the budget", "the holiday", "the garden party"]
_UNITS = ["kilometres", "dollars", "minutes", "people", "books", "apples", "degrees", "pages",
          "seconds", "metres"]

_TEMPLATES = [
    "{name} {verb} a {adj} {thing} near {place} {time}.",
    "Did {name} really leave the {thing} at {place}?",
    "Why was {place} so crowded {time}?",
    "There are {num} {unit} between here and {place}.",
    "{name} says that {topic} will be discussed {time}.",
    "Could you tell {name} that the {thing} is {adj}?",
    "It costs {num} dollars to fix a {adj} {thing}.",
    "How many {unit} did {name} count {time}?",
    "I think {topic} is more {adj} than it looks.",
    "Please bring the {adj} {thing} to {place} {time}.",
    "We waited {num} minutes outside {place}.",
    "{name} and {name2} argued about {topic} for hours.",
    "What happened to the {thing} that {name} {verb}?",
    "The answer is {num}, not {num2}.",
    "Nobody expected {name} to win with {num} points.",
    "Is it true that {topic} starts {time}?",
    "My {thing} is {adj}, but yours is {adj2}.",
    "Turn left at {place} and walk {num} metres.",
    "{name} has {num} {unit} and needs {num2} more.",
    "Honestly, I never liked {topic} very much.",
]


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return str(rng.randint(2, 20))
    if kind < 0.85:
        return str(rng.randint(21, 99))
    return str(rng.randint(100, 999))


def train_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` varied sentences from templates (deterministic for a seed); never in HELD_OUT."""
    rng = random.Random(seed)
    held = {s.lower() for s in HELD_OUT}
    out: list[str] = []
    while len(out) < n:
        t = rng.choice(_TEMPLATES)
        name, name2 = rng.sample(_NAMES, 2)
        adj, adj2 = rng.sample(_ADJ, 2)
        s = t.format(name=name, name2=name2, verb=rng.choice(_VERBS), adj=adj, adj2=adj2,
                     thing=rng.choice(_THINGS), place=rng.choice(_PLACES), time=rng.choice(_TIMES),
                     topic=rng.choice(_TOPICS), unit=rng.choice(_UNITS), num=_number(rng),
                     num2=_number(rng))
        s = s[0].upper() + s[1:]
        if s.lower() not in held:
            out.append(s)
    return out


# Held-out sentences: other templates and mostly other words than the generator's lists.
HELD_OUT = [
    "The committee will vote on the proposal next Thursday.",
    "Can you remind me where I parked the car?",
    "She planted forty tulips along the fence.",
    "Our flight to Lisbon was delayed by three hours.",
    "What is the capital city of Australia?",
    "The soup needs a little more salt and pepper.",
    "He finished the marathon in just under four hours.",
    "Would you like tea or coffee with your breakfast?",
    "The printer on the second floor is out of paper.",
    "Seventy five percent of the students passed the exam.",
    "I have never seen such a bright full moon.",
    "Where did you learn to speak Japanese so well?",
    "The river flooded the village after the storm.",
    "Please send the report before the end of the day.",
    "My grandmother turned ninety two last summer.",
    "How long does it take to boil an egg?",
    "The cat jumped onto the kitchen table again.",
    "We should leave early to avoid the traffic.",
    "The recipe calls for two cups of flour.",
    "Is there a pharmacy open near the hotel?",
    "The orchestra played until almost midnight.",
    "They moved to a small town in the mountains.",
    "Why do leaves change color in the autumn?",
    "The meeting room is booked from ten to eleven.",
    "I forgot my password for the third time this week.",
    "A thousand people attended the opening ceremony.",
    "Could you speak a little more slowly, please?",
    "The scientist explained the experiment very clearly.",
    "Our team scored twice in the final minutes.",
    "Which train goes directly to the airport?",
    "The children built a snowman in the backyard.",
    "Turn off the lights when you leave the room.",
    "The bank closes at five on weekdays.",
    "Have you ever tried to climb a volcano?",
    "The new phone has a much better battery.",
    "He apologized for being late to the interview.",
    "The museum displays paintings from six centuries.",
    "What time does the last bus leave tonight?",
    "Fresh bread smells wonderful in the morning.",
    "The pilot announced that we would land soon.",
    "I need eight chairs for the dinner party.",
    "Did anyone see where the dog went?",
    "The desert gets surprisingly cold at night.",
    "She wrote her first novel at the age of nineteen.",
    "The dentist asked me to come back in six months.",
    "Why is the sky blue during the day?",
    "Our neighbors are painting their house yellow.",
    "The hikers reached the summit just before noon.",
    # second batch (sentences 49-120), added so the bench's interval is narrower
    "The plumber fixed the leaking pipe under the sink.",
    "How far is the nearest gas station from here?",
    "Thirty seven passengers were waiting on the platform.",
    "The baby finally fell asleep after midnight.",
    "Could you pass me the salt, please?",
    "The farmer sold his apples at the Saturday fair.",
    "Which language is spoken in Brazil?",
    "The elevator has been broken since Tuesday.",
    "My brother collects old coins from Europe.",
    "The teacher asked everyone to close their books.",
    "Why did the meeting end so suddenly?",
    "A strong wind knocked down the old oak tree.",
    "We ordered pizza because nobody wanted to cook.",
    "The library will be closed for the holidays.",
    "How much does a ticket to the concert cost?",
    "The nurse checked his temperature twice an hour.",
    "Sixteen teams will compete in the tournament.",
    "Please keep your seat belt fastened during the flight.",
    "The painter mixed blue and yellow to make green.",
    "Who left the front door wide open?",
    "The lake freezes solid every January.",
    "Our cousin is getting married in October.",
    "The engine made a strange noise on the highway.",
    "Can you recommend a good book about history?",
    "The students planted trees around the playground.",
    "It rained so hard that the streets were flooded.",
    "The chef sliced the onions very thin.",
    "When does the swimming pool open on Sundays?",
    "The lawyer read the contract very carefully.",
    "Two hundred volunteers cleaned the beach on Saturday.",
    "I left my glasses somewhere in the living room.",
    "The mountain road is dangerous in winter.",
    "Did you remember to water the plants?",
    "The bakery sells fresh croissants every morning.",
    "Our train arrived twenty minutes ahead of schedule.",
    "The doctor said I should drink more water.",
    "What is the tallest building in the world?",
    "The kids were laughing at the clown's tricks.",
    "She practices the violin for two hours a day.",
    "The storm knocked out power across the whole city.",
    "Would you mind opening the window a little?",
    "The farmers hope for rain before the harvest.",
    "He repaired the fence with some spare wood.",
    "How many planets are there in the solar system?",
    "The theater was full for the opening night.",
    "My sister works as an engineer in Toronto.",
    "The tea is too hot to drink right now.",
    "Where can I buy stamps for these postcards?",
    "The puppy chewed through the garden hose.",
    "Fifty two cards make up a standard deck.",
    "The waiter brought us the wrong dessert.",
    "Is it going to snow again this weekend?",
    "The carpenter measured the door frame twice.",
    "Our school won the regional science fair.",
    "The sunset over the ocean was beautiful.",
    "Could you help me carry these boxes upstairs?",
    "The judge listened quietly to both witnesses.",
    "Most birds fly south when the weather turns cold.",
    "Why are the shops closed this afternoon?",
    "The firefighters rescued a kitten from the roof.",
    "I usually walk to work when the weather is nice.",
    "The package should arrive within three days.",
    "What kind of music do you enjoy most?",
    "The old castle stands on a hill above the town.",
    "He spilled orange juice all over the keyboard.",
    "The garage door opens with a remote control.",
    "Eleven players start the match for each side.",
    "She borrowed a ladder to clean the gutters.",
    "How do you say thank you in Italian?",
    "The police closed the road after the accident.",
    "Our holiday photos are still on the camera.",
    "The moon looked enormous above the hills tonight.",
]
