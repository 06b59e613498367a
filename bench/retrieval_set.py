"""A hand-written labelled retrieval set: topical documents, and for each one query that shares a
distinctive term with it (exact) and one that shares no content word with it (paraphrase).

Each entry: (file name, document text, exact-term query, paraphrase query). The bench checks the
paraphrase half really avoids the document's words (see ``check_labels``).
"""

from __future__ import annotations

import re

TOPICS: list[tuple[str, str, str, str]] = [
    ("car-maintenance.md",
     "Keeping an automobile in good shape. Take the vehicle to a mechanic when the engine makes a knocking "
     "noise. Change the motor oil every ten thousand kilometres, check the brakes, rotate the tyres and have "
     "the gearbox inspected before a long journey on the motorway.",
     "gearbox inspected", "fixing my car"),
    ("sourdough.md",
     "Baking a sourdough loaf at home. Feed the starter with flour and water the evening before, mix the "
     "levain into the dough, knead it, let it prove overnight in the fridge and bake it in a hot Dutch oven "
     "until the crust turns deep brown and the crumb is open.",
     "sourdough levain", "making bread"),
    ("vegetable-garden.md",
     "The vegetable plot in spring. Sow carrots, lettuce and radishes in raised beds, water the seedlings "
     "in the morning, mulch against weeds and net the brassicas so the pigeons leave them alone.",
     "brassicas pigeons", "growing food in the backyard"),
    ("marathon-training.md",
     "Preparing for a marathon. Build weekly mileage slowly, add one long run each Sunday, include tempo "
     "intervals on the track and taper during the final three weeks before race day. Carbohydrate loading "
     "helps in the last two days.",
     "tempo intervals", "endurance jogging event"),
    ("mortgage.md",
     "How a mortgage works. The bank lends the purchase price of a house and the borrower repays principal "
     "and interest in monthly instalments over twenty-five years. A fixed rate protects against rises; an "
     "adjustable rate follows the central bank.",
     "adjustable rate instalments", "home loan repayments"),
    ("dog-training.md",
     "Teaching a puppy good manners. Reward sitting with a treat, keep sessions short, use a clicker to "
     "mark the right behaviour and never punish accidents on the carpet; take the puppy outside after "
     "every meal and nap.",
     "clicker puppy", "obedience lessons for a young hound"),
    ("coffee-brewing.md",
     "Brewing coffee by hand. Grind the beans medium-fine just before brewing, heat water to about ninety-"
     "three degrees, bloom the grounds for thirty seconds and pour in slow circles over the pour-over "
     "dripper. An espresso needs a much finer grind and nine bars of pressure.",
     "espresso grind", "preparing a cup of java"),
    ("tax-return.md",
     "Filing the yearly tax return. Gather payslips, receipts for deductible expenses and the statement "
     "from the pension fund; the revenue office sends an assessment after the declaration and any refund "
     "arrives in a few weeks.",
     "revenue office assessment", "paying the government on income"),
    ("volcano.md",
     "How volcanoes erupt. Magma rises from the mantle into a chamber beneath the crust; when pressure from "
     "dissolved gases grows, it bursts through a vent as lava, ash and pyroclastic flows that rush down "
     "the slopes of the mountain.",
     "pyroclastic magma", "eruption of molten rock"),
    ("photosynthesis.md",
     "Photosynthesis in green plants. Chlorophyll in the leaves captures sunlight and uses its energy to "
     "turn carbon dioxide and water into glucose, releasing oxygen. The reactions happen inside "
     "chloroplasts.",
     "chloroplasts glucose", "how foliage turns light into sugar"),
    ("guitar-lessons.md",
     "Learning the guitar. Start with open chords such as G, C and D, practise changing between them with "
     "a metronome, build calluses on the fingertips and learn to strum in eighth notes before trying "
     "barre chords and fingerpicking.",
     "barre chords metronome", "playing a six-string instrument"),
    ("chess-openings.md",
     "Chess openings for beginners. Control the centre with pawns, develop knights before bishops, castle "
     "early to protect the king and avoid moving the queen out too soon. The Sicilian Defence and the "
     "Queen's Gambit are popular choices.",
     "Sicilian Defence", "first moves in the strategy board game"),
    ("recycling.md",
     "Sorting household waste. Rinse glass jars and tins, flatten cardboard boxes, put plastic bottles in "
     "the yellow bin and take batteries and electronics to the municipal collection point. Food scraps go "
     "into the compost.",
     "compost cardboard", "separating rubbish"),
    ("sleep-hygiene.md",
     "Sleeping better. Keep a regular bedtime, dim the lights an hour before, avoid caffeine after noon, "
     "keep the bedroom cool and dark and put the phone away; a short nap after lunch should not exceed "
     "twenty minutes.",
     "bedtime caffeine", "insomnia remedies"),
    ("solar-panels.md",
     "Installing photovoltaic panels on a roof. The modules convert sunlight into direct current; an "
     "inverter turns it into alternating current for the house and surplus electricity flows back to the "
     "grid. South-facing roofs at a thirty degree tilt yield the most.",
     "photovoltaic inverter", "rooftop energy from the sun"),
    ("wedding-planning.md",
     "Planning a wedding. Book the venue a year ahead, send invitations three months before, choose a "
     "caterer and a photographer, arrange the seating plan and rehearse the vows and the first dance.",
     "caterer seating plan", "organising a marriage ceremony"),
    ("first-aid-burns.md",
     "First aid for burns. Cool the burn under cool running water for twenty minutes, remove rings and "
     "watches, cover it loosely with cling film and do not apply butter or ice. Seek a doctor for blisters "
     "larger than a palm.",
     "cling film blisters", "treating a scald injury"),
    ("python-virtualenv.md",
     "Isolating Python projects. Create a virtual environment with the venv module, activate it and "
     "install packages with pip from a requirements file; every project keeps its own interpreter and "
     "site-packages folder.",
     "venv requirements", "separate dependency sandboxes for scripts"),
    ("bicycle-repair.md",
     "Mending a flat bicycle tyre. Lever the tyre off the rim, pull out the inner tube, find the puncture "
     "by pumping it up and listening, roughen the rubber, apply glue and a patch, then refit and inflate.",
     "inner tube puncture", "fixing a bike wheel"),
    ("knitting.md",
     "Knitting a scarf. Cast on forty stitches with wool yarn on five millimetre needles, knit every row "
     "in garter stitch, change colours for stripes and bind off loosely when it is long enough.",
     "garter stitch yarn", "making a woolly neck warmer"),
    ("tide-science.md",
     "Why the sea has tides. The gravitational pull of the moon and, to a lesser extent, the sun raises "
     "bulges in the oceans; as the earth turns, coasts pass through them, giving two high waters and two "
     "low waters roughly every day.",
     "gravitational bulges", "ocean levels rising and falling"),
    ("job-interview.md",
     "Preparing for a job interview. Research the employer, rehearse answers about strengths and "
     "weaknesses, prepare examples using the STAR method, dress neatly and send a thank-you note to the "
     "recruiter afterwards.",
     "STAR method recruiter", "getting hired after meeting a company"),
    ("aquarium.md",
     "Setting up a freshwater aquarium. Cycle the tank for several weeks so that bacteria convert ammonia "
     "to nitrate, add a filter and a heater, plant aquatic plants and introduce a few hardy fish such as "
     "guppies.",
     "ammonia nitrate guppies", "caring for tropical pets in a glass box"),
    ("earthquake-safety.md",
     "Staying safe in an earthquake. Drop, cover and hold on under a sturdy table, keep away from windows, "
     "and after the shaking stops check for gas leaks and expect aftershocks. Buildings are retrofitted to "
     "resist seismic waves.",
     "aftershocks seismic", "what to do when the ground shakes"),
    ("wine-tasting.md",
     "Tasting wine. Look at the colour against a white background, swirl the glass to release aromas, "
     "sniff, then sip and let it coat the palate; note the tannins, acidity and the length of the finish.",
     "tannins palate", "sampling vintages from a vineyard"),
    ("home-insulation.md",
     "Insulating a house. Lay mineral wool in the loft, fill cavity walls, fit draught excluders to doors "
     "and install double glazing; a well insulated home loses far less heat and the heating bill drops.",
     "loft cavity walls", "keeping a dwelling warm in winter"),
    ("camping.md",
     "Going camping in the mountains. Pitch the tent on level ground, stake the guy lines, keep food in a "
     "bear canister away from the sleeping area and carry a stove, a headlamp and a warm sleeping bag.",
     "bear canister guy lines", "overnight outdoors in the wilderness"),
    ("blood-pressure.md",
     "Understanding blood pressure. The reading has two numbers: systolic pressure when the heart beats "
     "and diastolic pressure between beats. Hypertension raises the risk of stroke; less salt, exercise "
     "and medication lower it.",
     "systolic diastolic", "cardiovascular readings and arteries"),
    ("spreadsheet-formulas.md",
     "Spreadsheet formulas. Sum a column with SUM, look up values in another table with VLOOKUP, count "
     "matching rows with COUNTIF and freeze the header row so it stays visible while scrolling.",
     "VLOOKUP COUNTIF", "calculations in an Excel workbook"),
    ("bird-migration.md",
     "Bird migration. Swallows and storks fly thousands of kilometres south each autumn to warmer "
     "wintering grounds, navigating by the sun, the stars and the earth's magnetic field, and return to "
     "breed in spring.",
     "swallows storks", "seasonal journeys of flying animals"),
    ("moving-house.md",
     "Moving to a new flat. Book a removal van, pack boxes room by room and label them, redirect the post, "
     "read the meters on the last day and register the new address with the council.",
     "removal van meters", "relocating to another apartment"),
    ("cheese-making.md",
     "Making cheese. Warm milk, add a starter culture and rennet so that curds form, cut the curd, drain "
     "the whey, press the curds in a mould and age the wheel in a cool cellar for months.",
     "rennet whey", "turning dairy into a ripened product"),
    ("password-security.md",
     "Choosing passwords. Use a long passphrase, never reuse it across sites, keep credentials in a "
     "password manager and enable two-factor authentication so a stolen password alone cannot open the "
     "account.",
     "passphrase authentication", "protecting my online login"),
    ("beekeeping.md",
     "Keeping bees. A colony lives in a hive with a queen, workers and drones; the beekeeper wears a veil, "
     "calms the bees with a smoker and harvests honey from the frames of the super in late summer.",
     "smoker hive frames", "apiary with stinging insects"),
    ("rainbows.md",
     "How rainbows form. Sunlight enters raindrops, is refracted, reflected inside the drop and refracted "
     "again on the way out; each wavelength bends by a different angle so the colours spread into an arc.",
     "refracted wavelength", "coloured bow in the sky after a shower"),
    ("piano-practice.md",
     "Practising the piano. Play scales and arpeggios every day, work on difficult passages slowly with "
     "the metronome, use the sustain pedal sparingly and learn to read both the treble and bass clef.",
     "arpeggios sustain pedal", "keyboard instrument exercises"),
    ("flu-vaccine.md",
     "The seasonal influenza vaccine. Each year the shot is updated for the strains expected to circulate; "
     "it trains the immune system to make antibodies, and older people and pregnant women are advised to "
     "get it in autumn.",
     "influenza antibodies", "yearly jab against the virus"),
    ("kayaking.md",
     "Sea kayaking. Wear a buoyancy aid and a spray deck, learn the forward stroke and the sweep stroke, "
     "practise a wet exit and an eskimo roll in calm water and always check the forecast and tides.",
     "spray deck eskimo roll", "paddling a small boat on the ocean"),
    ("pottery.md",
     "Throwing pots. Wedge the clay to remove air, centre it on the wheel, open it with the thumbs, pull "
     "up the walls, trim the foot when leather hard and fire the piece in a kiln before glazing.",
     "kiln wedge clay", "ceramics on a spinning potter's disc"),
    ("stock-market.md",
     "Investing in shares. A stock exchange matches buyers and sellers of company shares; an index fund "
     "spreads money across many firms, dividends pay out part of the profits and diversification lowers "
     "risk.",
     "dividends index fund", "buying equities for retirement savings"),
    ("snow-tyres.md",
     "Winter tyres. Below seven degrees the softer rubber compound and deep sipes of winter tyres grip "
     "better on slush and ice; fit them in all four positions and check the tread depth before the "
     "season.",
     "sipes tread depth", "wheels for icy roads"),
    ("compost-heap.md",
     "Building a compost heap. Alternate green material such as grass clippings with brown material such "
     "as dry leaves, keep it moist, turn it every few weeks so it gets air and after a year it becomes "
     "crumbly humus.",
     "clippings humus", "rotting garden waste into soil"),
    ("astronomy.md",
     "Stargazing with a telescope. Let your eyes adapt to the dark, find the Pole Star using the Plough, "
     "observe the craters of the moon, the rings of Saturn and the moons of Jupiter on a clear night far "
     "from city lights.",
     "Saturn Jupiter telescope", "looking at planets through a lens"),
    ("email-etiquette.md",
     "Writing professional email. Use a clear subject line, greet the recipient, keep paragraphs short, "
     "state the request plainly, proofread before sending and avoid reply-all unless everyone needs the "
     "answer.",
     "subject line proofread", "polite business correspondence"),
    ("hiking-boots.md",
     "Choosing hiking boots. Look for a stiff sole, ankle support and a waterproof membrane, try them on "
     "in the afternoon with thick socks and break them in on short walks before a trek.",
     "waterproof membrane ankle", "footwear for mountain trails"),
    ("electric-cars.md",
     "Electric cars. A lithium-ion battery powers the motor; owners charge at home overnight or at fast "
     "chargers on the highway, regenerative braking recovers energy and the range depends on speed and "
     "temperature.",
     "regenerative braking lithium", "plug-in vehicles"),
    ("climate-change.md",
     "Global warming. Burning coal, oil and gas releases carbon dioxide that traps heat in the atmosphere; "
     "glaciers melt, sea levels rise and heatwaves become more frequent unless emissions fall.",
     "glaciers emissions", "the planet getting hotter"),
    ("public-speaking.md",
     "Speaking in public. Know the audience, structure the talk with an opening, three points and a "
     "close, rehearse aloud, breathe slowly to calm nerves and make eye contact instead of reading slides.",
     "rehearse audience nerves", "giving a presentation to a crowd"),
    ("fishing.md",
     "Fly fishing for trout. Cast the line upstream, let the fly drift naturally on the current, set the "
     "hook gently when a trout rises and release the fish quickly with wet hands.",
     "fly fishing trout", "angling in a river"),
    ("tea-ceremony.md",
     "The Japanese tea ceremony. The host whisks powdered matcha with hot water in a bowl, guests bow, "
     "turn the bowl before drinking and admire the utensils; every movement follows a calm ritual.",
     "matcha utensils", "traditional green beverage etiquette"),
]

STOP = set(re.findall(r"\w+", "a an the of for to in on at by with from and or my me i how what when why is are be "
                              "do after into its it about"))


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP}


def check_labels() -> list[str]:
    """Problems with the set: a paraphrase query that shares a word with its document, an exact one that doesn't."""
    problems = []
    for name, doc, exact, para in TOPICS:
        shared = content_words(para) & content_words(doc)
        if shared:
            problems.append(f"{name}: paraphrase query shares {sorted(shared)}")
        if not content_words(exact) <= content_words(doc):
            problems.append(f"{name}: exact query has words not in the document")
    return problems


def queries() -> list[tuple[str, str, str]]:
    """(half, query, expected file) for both halves."""
    out = [("exact", exact, name) for name, _, exact, _ in TOPICS]
    out += [("paraphrase", para, name) for name, _, _, para in TOPICS]
    return out
