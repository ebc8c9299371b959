"""The answer-quality set: three documents in three formats, the questions
they answer (each by one sentence) and questions they do not cover.

The questions are phrased the way people ask, not copied from the text: the
fact is what the answer must contain (any one of the alternatives, compared
case-insensitively), the document is the one that must be cited.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELD_STATION_PAGES = [
    "Kestrel Point Field Station. Visitor and operations manual. Arrival and accommodation. "
    "The field station is reached by the ferry from Harwick, which leaves at 07:40 and 16:15 on weekdays. "
    "Visitors must register at the station office within two hours of arriving. "
    "Each bunk room sleeps four people and has its own drying cupboard for wet gear. "
    "Quiet hours run from 22:00 to 06:30 in the accommodation block. "
    "Bed linen is provided, but visitors bring their own towels.",
    "Safety and boats. Nobody may take a boat out when the wind forecast exceeds 20 knots. "
    "Every boat trip is logged on the whiteboard in the boathouse, with the crew names and the expected return time. "
    "Life jackets are stored in the blue container next to the slipway. "
    "The station's first aider is Dr Imogen Reyes, who can be reached on radio channel 6. "
    "The nearest hospital is in Harwick, about 50 minutes away by ferry and ambulance. "
    "Solo fieldwork on the northern cliffs is forbidden at all times.",
    "Laboratory and waste. The wet laboratory is open from 07:00 to 21:00, and its key is kept at the office. "
    "Samples in the chest freezer must be labelled with the collector's name, the date and the site code. "
    "Chemical waste goes into the yellow drums in the waste shed, never down the sink. "
    "The microscope room can be booked in half-day slots through the station calendar. "
    "Drinking water comes from a rainwater system and is tested every month.",
]

IT_HANDBOOK_MD = """# Lindqvist & Hart IT Handbook

This handbook explains the IT services every employee can use.

## Accounts and passwords

New staff receive their account details from their line manager on the first working day.
Passwords must be at least 14 characters long.
The system asks you to choose a new password every 180 days.
After five failed sign-in attempts an account is locked for 15 minutes.

## Remote access

Remote access uses the GlobalConnect VPN client with the profile named hq-secure.
Multi-factor codes come from the Authenticator app, never by text message.

## Devices

Laptops are replaced every four years, or sooner when they fail.
Lost or stolen devices must be reported to the service desk within one hour.
Personal USB drives are blocked on company laptops, so use the shared drive instead.

## Printing

The colour printer on the second floor is called Magenta and releases jobs when you tap your badge.
Print jobs that are not released within 24 hours are deleted.

## Files and backups

Files on the shared drive are backed up every night at 01:00 and kept for 90 days.
To restore a deleted file, open a ticket on the service portal with the file's path.

## Getting help

The service desk answers on extension 4400 from 08:00 to 18:00 on weekdays.
Outside those hours, urgent incidents go to the on-call engineer on pager number 555-0199.
Software requests are approved by your team lead and installed within three working days.
"""

FACILITIES_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Riverside Office facilities guide</title>
<style>body { font-family: serif; }</style></head>
<body>
<nav><a href="/">Intranet</a> | <a href="/search">Search</a></nav>
<main>
<h1>Riverside Office facilities guide</h1>
<h2>Getting in</h2>
<p>The building opens at 06:45 and closes at 20:00 on weekdays.</p>
<p>Visitors sign in at reception and wear a red lanyard at all times.</p>
<p>A lost access badge costs 25 euros to replace.</p>
<h2>Parking and bikes</h2>
<p>Staff park in the underground garage on level minus two, with a permit from the facilities team.</p>
<p>The bike store by the east entrance has 60 racks and two charging points for e-bikes.</p>
<p>Showers and lockers are on the ground floor next to the gym.</p>
<h2>Canteen</h2>
<p>The canteen serves lunch from 11:45 to 14:00.</p>
<p>A vegetarian dish is offered every day, and a vegan one on Tuesdays and Thursdays.</p>
<p>Coffee from the machines on every floor is free for staff and visitors.</p>
<h2>Meeting rooms</h2>
<p>The largest meeting room, Delta, seats 24 people and has a video conferencing system.</p>
<p>Rooms are booked in the Roomly app for at most four hours at a time.</p>
<h2>Safety</h2>
<p>Fire drills take place on the first Monday of every quarter at 10:00.</p>
<p>When the alarm sounds, everyone gathers at the assembly point in the car park across Mill Street.</p>
<p>Defibrillators hang beside the lifts on every floor.</p>
<p>Report a building fault, such as a broken light, to the facilities team on extension 2100.</p>
</main>
<script>document.title = "not part of the text";</script>
</body></html>
"""

PDF = "field-station.pdf"
MD = "it-handbook.md"
HTML = "facilities.html"


@dataclass(frozen=True)
class Question:
    text: str
    document: str | None = None  # None: the documents do not cover it
    facts: tuple[str, ...] = ()


def q(text: str, document: str, *facts: str) -> Question:
    return Question(text, document, facts)


ANSWERABLE = [
    q("What time does the morning boat to the station leave?", PDF, "07:40"),
    q("How soon after I arrive do I need to sign in at the station?", PDF, "two hours"),
    q("How many people share a bunk room?", PDF, "four"),
    q("From what time at night do I have to keep quiet in the accommodation?", PDF, "22:00"),
    q("Do I need to bring a towel to the field station?", PDF, "towels"),
    q("Above what wind speed are boats not allowed out?", PDF, "20 knots"),
    q("Where do I write down a boat trip before leaving?", PDF, "whiteboard"),
    q("Where can I find a life jacket?", PDF, "blue container"),
    q("Which radio channel reaches the first aider?", PDF, "channel 6"),
    q("How far away is the closest hospital from the station?", PDF, "50 minutes"),
    q("Am I allowed to do fieldwork alone on the north cliffs?", PDF, "forbidden"),
    q("Until what time can I use the wet lab?", PDF, "21:00"),
    q("What has to be written on a sample I put in the freezer?", PDF, "site code"),
    q("How should I get rid of chemical waste?", PDF, "yellow drums"),
    q("How do I reserve the microscope room?", PDF, "station calendar"),
    q("How often is the drinking water checked?", PDF, "every month"),
    q("Who gives me my login on my first day?", MD, "line manager"),
    q("How long does my password have to be?", MD, "14 characters"),
    q("How often do I have to change my password?", MD, "180 days"),
    q("What happens if I type my password wrong too many times?", MD, "15 minutes"),
    q("Which VPN profile should I use when working from home?", MD, "hq-secure"),
    q("Where do I get my two-factor code from?", MD, "Authenticator app"),
    q("How often do we get new laptops?", MD, "four years"),
    q("How quickly do I have to report a stolen laptop?", MD, "one hour"),
    q("Can I plug my own USB stick into my work laptop?", MD, "blocked"),
    q("What is the colour printer called?", MD, "Magenta"),
    q("How long does a print job wait before it is thrown away?", MD, "24 hours"),
    q("For how long are backups of the shared drive kept?", MD, "90 days"),
    q("I deleted a file by mistake, how do I get it back?", MD, "ticket"),
    q("What number do I call for IT help?", MD, "4400"),
    q("Who do I contact about an urgent IT problem at night?", MD, "555-0199", "on-call engineer"),
    q("How long does it take to get new software installed?", MD, "three working days"),
    q("What time does the office open in the morning?", HTML, "06:45"),
    q("What colour lanyard do guests wear?", HTML, "red"),
    q("How much do I pay if I lose my badge?", HTML, "25 euros"),
    q("Where can employees park their car?", HTML, "underground garage", "level minus two"),
    q("Is there anywhere to charge an electric bike?", HTML, "charging points"),
    q("Where are the showers in the building?", HTML, "ground floor"),
    q("When can I get lunch?", HTML, "11:45"),
    q("On which days is there a vegan meal?", HTML, "Tuesdays"),
    q("Do I have to pay for coffee?", HTML, "free"),
    q("How many people fit in the biggest meeting room?", HTML, "24"),
    q("What's the longest I can book a meeting room for?", HTML, "four hours"),
    q("When are the fire drills held?", HTML, "first Monday"),
    q("Where do we gather when the fire alarm goes off?", HTML, "Mill Street"),
    q("How do I report a broken light?", HTML, "2100"),
]

UNCOVERED = [
    Question("How many days of annual leave do employees get?"),
    Question("What is the password for the guest Wi-Fi?"),
    Question("Can I bring my dog to work?"),
    Question("How do I claim back travel expenses?"),
    Question("Who is the chief executive of the company?"),
    Question("Is there a dress code for the office?"),
    Question("What is the capital of Australia?"),
    Question("How do I apply for parental leave?"),
    Question("Which bus goes to the office from the train station?"),
    Question("How do I book a flight for a business trip?"),
    Question("How much is the annual bonus?"),
    Question("When is the company summer party?"),
]


def documents() -> dict[str, bytes]:
    from tests.support.corpus import pdf_bytes

    return {PDF: pdf_bytes(FIELD_STATION_PAGES), MD: IT_HANDBOOK_MD.encode(), HTML: FACILITIES_HTML.encode()}
