"""A small hand-written paraphrase set: pairs that say the same thing in other words (so their word
n-grams barely overlap), plus unrelated texts on neighbouring topics."""

PARAPHRASE_PAIRS = [
    ("The city council voted on Tuesday to build a new public library next to the central train station.",
     "On Tuesday, local lawmakers approved plans for a fresh municipal library beside the main railway depot."),
    ("Heavy rain flooded several roads overnight, and the fire brigade rescued drivers stuck in their cars.",
     "Overnight downpours left a number of streets under water; firefighters pulled motorists from stranded vehicles."),
    ("The company reported that its profits doubled this year thanks to strong sales of electric bicycles.",
     "Booming demand for e-bikes helped the firm's earnings grow twofold over the past twelve months."),
    ("Scientists discovered a new species of frog in the rainforest that glows faintly under ultraviolet light.",
     "Researchers have identified a previously unknown frog in the jungle which shimmers softly when lit by UV lamps."),
    ("The football match was postponed because the pitch was frozen after a night of snow.",
     "After overnight snowfall left the field icy, officials called off the soccer game until a later date."),
    ("Doctors recommend drinking plenty of water and resting when recovering from a mild fever.",
     "If you have a slight temperature, physicians advise staying hydrated and getting lots of sleep."),
    ("The museum will open a new exhibition of ancient Egyptian jewelry next month.",
     "Next month the gallery is launching a display of old jewellery from the time of the pharaohs."),
    ("Prices at the supermarket rose sharply because of the poor harvest of wheat and corn.",
     "Grocery costs climbed steeply after farmers brought in a weak crop of grain and maize."),
    ("The airline cancelled dozens of flights after a strike by air traffic controllers.",
     "Many planes were grounded by the carrier when the people who manage airspace walked off the job."),
    ("Students at the school planted two hundred trees to celebrate the end of the academic year.",
     "To mark the close of term, pupils put two hundred saplings in the ground around their campus."),
    ("The old bridge over the river will be closed for repairs for the next six weeks.",
     "For a month and a half, the aging crossing spanning the waterway is shut while workers fix it."),
    ("A small earthquake shook the coastal town early this morning, but nobody was hurt.",
     "Residents of the seaside village felt a minor tremor at dawn today; no injuries were reported."),
]

UNRELATED = [
    "The orchestra performed a symphony by Brahms to a sold-out concert hall on Saturday evening.",
    "A recipe for lemon cake needs flour, sugar, butter, three eggs and the zest of two lemons.",
    "The telescope captured detailed images of a distant galaxy that formed billions of years ago.",
    "Chess players study openings for years before they compete in international tournaments.",
    "The parliament debated a law that would change how pensions are taxed for retired teachers.",
    "Volunteers cleaned plastic waste from the beach and sorted it for recycling on Sunday.",
    "The novel follows a young sailor who travels around the world searching for his lost brother.",
    "Engineers tested a new battery that charges in ten minutes and lasts for a thousand cycles.",
    "The zoo welcomed a baby giraffe, the first born there in more than twenty years.",
    "Tourists crowded the old market to buy spices, carpets and hand-painted ceramic bowls.",
    "The software update fixes a security flaw that let attackers read private messages.",
    "Farmers in the valley switched to drip irrigation to save water during the long drought.",
]
