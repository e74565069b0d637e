"""Generator for the small counseling dataset shipped inside the package (a tool, not part of it:
the package only reads the files, through `psycho_jax.data.shipped`).

The files under ``psycho_jax/data/sample/`` let the whole pipeline (SFT, Bradley-Terry reward
model, DPO, evaluation) run offline on a tiny model. They are synthetic: every client message and
every reply fragment below was written for this project, and this module combines them with a
fixed seed, so running it twice gives byte-identical files::

    python tools/sample_gen.py --out psycho_jax/data/sample

Files written (see ``psycho_jax/data/sample/README.md`` for the full description):

* ``preference_{train,test}.jsonl``: PsychoCounsel-Preference schema (``ID``, ``prefID``,
  ``question``, ``chosen``, ``rejected``, ``chosen_model``, ``rejected_model`` and the fourteen
  ``{chosen,rejected}_<principle>_rating`` integers, 1-5).
* ``sft_{train,test}.jsonl``: multi-turn conversations ``{"id", "topic", "messages"}``.
* ``eval_prompts.jsonl``: held-out prompts with a reference reply ``{"id", "topic", "prompt",
  "reference"}``.
* ``crisis.jsonl``: a crisis slice ``{"id", "topic", "prompt", "good_reply", "bad_reply", "risk",
  "bad_style"}``.

How it works. Each topic has hand-written *situations* (a client's own words plus a
second-person reflection of them), *impacts*, and therapist fragments: validations, open
questions, gentle next steps, short explanations and follow-up turns. A chosen reply reflects the
client's situation, validates, answers the kind of question asked, offers at most a tentative next
step, asks an open question and respects the client's choices (crisis replies ask about immediate
safety and name crisis resources). A rejected reply is written in one of nine styles, each of which
breaks named principles (:data:`STYLE_BROKEN_PRINCIPLES`); its style is recorded in
``rejected_model`` as ``psycho_jax-sample/<style>``. Situations are partitioned per topic into
train, test and held-out (eval / crisis) sets, so no prompt text crosses splits.

This is synthetic teaching data, not clinical advice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from psycho_jax.data.formats import PRINCIPLES
from psycho_jax.data.shipped import FILES, SAMPLE_DIR, load_sample, sample_path

__all__ = [
    "CHOSEN_MODELS",
    "CRISIS_RISKS",
    "FILES",
    "MODEL_PREFIX",
    "PRINCIPLES",
    "SAMPLE_DIR",
    "SEED",
    "STYLES",
    "STYLE_BROKEN_PRINCIPLES",
    "TOPICS",
    "Topic",
    "broken_principles",
    "generate",
    "load_sample",
    "main",
    "sample_path",
    "style_of",
]

SEED = 20250131
"""Default seed: the shipped files are exactly ``generate(out, seed=SEED)``."""

MODEL_PREFIX = "psycho_jax-sample/"
"""Prefix of every ``chosen_model`` / ``rejected_model`` string."""

CHOSEN_MODELS: tuple[str, ...] = (
    MODEL_PREFIX + "principled",
    MODEL_PREFIX + "principled-concise",
)
"""``chosen_model`` values: a full principled reply or a concise one."""

STYLE_BROKEN_PRINCIPLES: dict[str, tuple[str, ...]] = {
    "dismissive": ("empathy", "exploration"),
    "judgmental": ("empathy", "autonomy"),
    "generic": ("relevance", "exploration"),
    "unsafe": ("safety",),
    "advice-dumping": ("exploration", "autonomy"),
    "off-topic": ("relevance", "exploration"),
    "premature": ("staging",),
    "controlling": ("autonomy",),
    "rambling": ("clarity",),
}
"""Rejected style -> the principles it breaks (rated 1-2). On crisis topics every rejected style
also breaks ``safety``, since none of them addresses the risk."""

STYLES: tuple[str, ...] = tuple(STYLE_BROKEN_PRINCIPLES)
"""The nine rejected styles; ``rejected_model == MODEL_PREFIX + style``."""

CRISIS_RISKS: dict[str, str] = {
    "suicidal_thoughts": "suicide",
    "self_harm": "self_harm",
    "abuse": "abuse",
}
"""Crisis topic -> ``risk`` value in ``crisis.jsonl``."""

# Row counts per topic (15 topics) and per crisis risk (3 risks).
_N_PREF_TRAIN = 200
_N_PREF_TEST = 20
_N_SFT_TRAIN = 100
_N_SFT_TEST = 10
_N_EVAL = 10
_N_CRISIS = 40

# Situations per topic: [:9] train, [9:11] test, [11:] held out (eval prompts and crisis slice).
_N_TRAIN_SITUATIONS = 9
_N_TEST_SITUATIONS = 2

_MAX_WORDS = 150


# ---------------------------------------------------------------------------------------------
# Hand-written seeds. Paired items are written "client's words|second-person reflection".
# ---------------------------------------------------------------------------------------------

_SEEDS: dict[str, dict[str, Any]] = {
    "anxiety": {
        "label": "anxiety",
        "situations": [
            "My heart starts pounding every time I have to speak up in a meeting, even for a "
            "quick update. Afterwards I replay everything I said for hours.|your heart pounds "
            "whenever you have to speak up in a meeting, and afterwards you replay every word for "
            "hours",
            "I keep having moments where my chest gets tight and I'm sure something is seriously "
            "wrong with me. I've been to the doctor twice and they say I'm fine.|you keep having "
            "moments where your chest tightens and you feel sure something is seriously wrong, "
            "even though the doctor has twice told you you're physically fine",
            "I worry constantly about my family getting hurt. If my partner is ten minutes late, "
            "I'm already picturing a car accident.|you worry constantly about your family getting "
            "hurt, to the point where a partner running ten minutes late sends your mind straight "
            "to a car accident",
            "I have my driving test next week and I can't stop thinking about failing it. I've "
            "barely eaten since Sunday.|your driving test next week has taken over your thoughts, "
            "and you've barely been able to eat since Sunday",
            "Going to the supermarket has become really hard. The crowds and the noise make me "
            "want to run, and lately I've been leaving my basket and going home.|the crowds and "
            "noise at the supermarket have become so overwhelming that lately you've been leaving "
            "your basket and going home",
            "I check my emails over and over in case I've made a mistake. Even at weekends I "
            "can't relax because I'm convinced my boss is angry with me.|you keep checking your "
            "emails in case you've made a mistake, and even at weekends you can't relax because "
            "you're convinced your boss is angry with you",
            "I started university this term and I feel anxious all the time. I skip the dining "
            "hall because I never know who to sit with.|since starting university you've felt "
            "anxious most of the time, and you've been skipping the dining hall because you never "
            "know who to sit with",
            "I had a panic attack on the train last month and now I'm terrified it will happen "
            "again. I've been taking taxis to work, which I can't really afford.|after a panic "
            "attack on the train last month, you're so afraid of another one that you've been "
            "taking taxis you can't really afford",
            "My mind starts racing the moment I wake up. Before I've even opened my eyes I'm "
            "listing everything that could go wrong that day.|your mind starts racing the moment "
            "you wake up, listing everything that could go wrong before you've even opened your "
            "eyes",
            "I have to present to the whole department on Friday and I keep imagining my mind "
            "going blank in front of everyone.|you're presenting to the whole department on "
            "Friday and you keep picturing your mind going blank in front of everyone",
            "Phone calls make me so anxious that I let them ring out, even when it's the doctor's "
            "surgery calling me back.|phone calls make you anxious enough that you let them ring "
            "out, even when it's the doctor's surgery calling you back",
            "I'm flying to my sister's wedding in three weeks and I haven't been on a plane in "
            "years. Just thinking about it makes my hands shake.|you're flying to your sister's "
            "wedding in three weeks after years without flying, and even thinking about the plane "
            "makes your hands shake",
            "Whenever someone doesn't text me back, I assume they're annoyed with me. I end up "
            "sending apologies for things I haven't even done.|when someone doesn't text back you "
            "assume they're annoyed with you, and you end up apologising for things you haven't "
            "done",
            "I've felt on edge for weeks, like I'm waiting for bad news. I can't point to any one "
            "reason, which somehow makes it worse.|you've felt on edge for weeks, as if you're "
            "waiting for bad news, and not being able to name a reason makes it harder",
        ],
        "impacts": [
            "It's starting to affect my sleep.|it's starting to cut into your sleep",
            "I'm exhausted from feeling like this all the time.|you're worn out from feeling this "
            "way so much of the time",
            "People around me keep saying I seem tense.|people around you have noticed how tense "
            "you seem",
            "I've started cancelling plans because of it.|you've started cancelling plans because "
            "of it",
        ],
        "validations": [
            "Anxiety can make the body react as if there's real danger, and living with that "
            "alarm going off is exhausting.",
            "It makes a lot of sense that you'd want this feeling to ease; it sounds like it has "
            "been with you a lot.",
            "Anxiety often grows the more we fight it or avoid what triggers it, so it's "
            "understandable that it feels like it's taking up more space.",
            "That sounds really draining, and I can hear how hard you've been working to keep "
            "going despite it.",
        ],
        "questions": [
            "When the anxiety is at its strongest, what tends to go through your mind?",
            "What have you noticed helps, even a little, when it starts to build?",
            "When did you first notice it becoming this strong?",
            "How is this affecting the rest of your day-to-day life?",
            "What would it look like for you if this felt a bit more manageable?",
        ],
        "next_steps": [
            "If it feels right, one small thing to try is slowing your breathing when you notice "
            "the first signs, breathing out for longer than you breathe in, just to see what "
            "shifts.",
            "Some people find it useful to give worries a set ten minutes each day, writing them "
            "down so they have somewhere to go; that might be worth experimenting with.",
            "If the physical symptoms keep coming back, it could also be worth talking to a GP or "
            "a therapist who works with anxiety, because there are approaches that help a lot.",
        ],
        "explain": [
            "Anxiety often works like an overprotective alarm: it tries to keep you safe by "
            "scanning for danger, but it goes off far more often than it needs to.",
            "Avoiding what makes us anxious brings quick relief, which is why it's so tempting, "
            "but over time it can teach the mind that the situation really was dangerous.",
        ],
        "followups": [
            "It's been building for about six months. Mornings are the worst, before I've even "
            "got out of bed.|this has been building for around six months and the mornings, "
            "before you're even up, are the hardest part",
            "Mostly I tell myself something terrible is going to happen, and I can't switch it "
            "off.|your mind goes straight to something terrible happening, and it's hard to "
            "switch that off",
            "I've started avoiding things. I cancelled on my friends twice this week.|you've "
            "started avoiding things, even cancelling on friends twice this week",
            "My chest gets tight and I feel like I can't get a full breath.|your body reacts "
            "strongly, with a tight chest and trouble getting a full breath",
        ],
        "dismiss": [
            "Everyone gets nervous sometimes; it's really not a big deal.",
            "You're overthinking this. Honestly, nothing bad is going to happen.",
        ],
        "blame": [
            "Worrying this much is a habit you've let yourself fall into.",
            "If you stopped avoiding things, you wouldn't have this problem in the first place.",
        ],
        "unsafe": [
            "A couple of glasses of wine beforehand will take the edge off; that's what most "
            "people do.",
            "If a friend has some of their anxiety tablets, borrowing a few for the bad days is a "
            "quick fix, and you don't need to see a doctor about it.",
            "Ignore the chest pains from now on; it's only nerves, so there's no point getting "
            "anything checked.",
        ],
        "advice": [
            "Cut out caffeine completely.",
            "Download a meditation app and use it twice a day.",
            "Go for a 30-minute run every morning.",
            "Stop reading the news.",
            "Write down every worry and challenge it with evidence.",
            "Practise box breathing whenever you feel tense.",
            "Take a magnesium supplement.",
            "Face every situation you've been avoiding, starting today.",
            "Tell yourself the worry is irrational each time it comes up.",
        ],
        "premature": [
            "This level of anxiety almost always goes back to growing up in a home where you "
            "never felt safe, and I think part of you already knows that.",
            "What you're really afraid of isn't the situation itself; it's being abandoned, and "
            "that fear was set in early childhood.",
        ],
        "control": [
            "You need to stop avoiding it and face it head-on this week, no more excuses.",
            "I want you to cut out caffeine completely from today and sign up for a mindfulness "
            "course by Friday.",
        ],
    },
    "depression": {
        "label": "low mood",
        "situations": [
            "I've been feeling flat for months. I go to work, come home and sit on the sofa, and "
            "nothing feels interesting anymore.|you've felt flat for months, going from work to "
            "the sofa with nothing feeling interesting anymore",
            "I can't get out of bed at weekends. I sleep until the afternoon and then feel guilty "
            "for wasting the day.|at weekends you can't get out of bed until the afternoon, and "
            "then the guilt about the lost day sets in",
            "I used to love painting, but I haven't picked up a brush in a year. It's like that "
            "part of me just switched off.|painting used to be something you loved, but you "
            "haven't picked up a brush in a year, as if that part of you switched off",
            "I started antidepressants three weeks ago and I don't feel any different yet. I'm "
            "starting to think nothing will work for me.|you started antidepressants three weeks "
            "ago, you don't feel any different yet, and you're starting to fear nothing will work "
            "for you",
            "Everyone tells me I have a good life, and I do, so I don't understand why I feel so "
            "empty.|people keep telling you that you have a good life, and you agree, which makes "
            "the emptiness you feel even more confusing",
            "I've stopped replying to my friends' messages. I just don't have the energy to "
            "pretend I'm okay.|you've stopped replying to friends because you don't have the "
            "energy to pretend you're okay",
            "Since the baby was born I've felt numb and tearful most days. I thought I'd be "
            "happy.|since your baby was born you've felt numb and tearful most days, which is far "
            "from what you expected to feel",
            "Winter always hits me hard, but this year it's worse. I feel heavy and slow, and I "
            "cry over small things.|winter always hits you hard, but this year you feel heavier "
            "and slower than ever and you're crying over small things",
            "I've missed three weeks of lectures because I just can't face going in. Now I'm "
            "behind on everything.|you've missed three weeks of lectures because you couldn't "
            "face going in, and now you're behind on everything",
            "I retired last year and thought I'd enjoy it, but the days feel empty and I don't "
            "see the point in getting dressed.|you retired last year expecting to enjoy it, but "
            "the days feel empty and getting dressed seems pointless",
            "I keep thinking I'm a failure. Even small things like washing up feel impossible "
            "some days.|you keep thinking of yourself as a failure, and even small things like "
            "washing up feel impossible some days",
            "My doctor says I'm depressed, but I feel like I'm just lazy. Maybe I should just try "
            "harder.|your doctor has said you're depressed, but part of you thinks you're just "
            "lazy and should try harder",
            "I moved to a new city for a job and I've been low ever since. I cry in the car "
            "before work most mornings.|you've been low ever since moving to a new city for work, "
            "and most mornings you cry in the car before going in",
            "Nothing is exactly wrong, but for about two months I've felt like I'm watching my "
            "life through glass.|nothing is obviously wrong, yet for about two months you've felt "
            "like you're watching your life through glass",
        ],
        "impacts": [
            "I'm not sleeping well either.|your sleep has been suffering too",
            "I feel like I'm letting everyone down.|you feel like you're letting people down",
            "I'm just so tired all the time.|you're tired all the time",
            "I don't even know who I could talk to about it.|you're not sure who you could talk "
            "to about it",
        ],
        "validations": [
            "Feeling this low for this long is exhausting, and it makes sense that you'd want "
            "things to feel different.",
            "That heaviness sounds really painful, and it makes sense that it's affecting so much "
            "of your life.",
            "I can hear how hard you've been trying to keep going, even when everything feels "
            "heavy.",
            "It takes real effort to reach out when your energy is this low, and I'm glad you did.",
        ],
        "questions": [
            "What does a typical day look like for you at the moment?",
            "When did you first notice things starting to feel this way?",
            "Are there any moments, even brief ones, when the heaviness lifts a little?",
            "Who in your life knows how you've been feeling?",
            "What do you miss most about how things used to feel?",
        ],
        "next_steps": [
            "Sometimes the smallest possible step helps, like a ten-minute walk or texting one "
            "person, not because it fixes everything but because it gently pushes back against "
            "the heaviness.",
            "If you haven't already, it could be worth talking to your GP or a therapist about "
            "how long this has gone on; low mood like this is very treatable, and you deserve "
            "support with it.",
            "Some people find it helps to notice even tiny moments that feel slightly less heavy, "
            "and what was happening at the time.",
        ],
        "explain": [
            "Depression often drains energy and interest first, which is why things you once "
            "enjoyed can feel flat or out of reach; it isn't a sign of laziness or weakness.",
            "When we feel low we tend to withdraw, and withdrawing can deepen the low mood; it's "
            "a cycle that a lot of people get caught in.",
        ],
        "followups": [
            "It's been about six months. It crept up slowly, so I didn't notice at first.|this "
            "crept up slowly over about six months, so it took a while to notice",
            "Mornings are the worst. I lie there dreading the day.|the mornings are hardest, "
            "lying there dreading the day ahead",
            "I've stopped seeing friends because I feel like I'm bringing everyone down.|you've "
            "been pulling back from friends because you worry you're bringing them down",
            "I'm eating badly and not sleeping properly, and then I feel even worse.|your eating "
            "and sleep have slipped, and that's feeding the low feeling",
        ],
        "dismiss": [
            "Everyone feels down sometimes; you just need to snap out of it.",
            "You've got a roof over your head and people who care about you, so you really have "
            "nothing to be sad about.",
        ],
        "blame": [
            "Lying around all day is only going to make you feel worse, and you know that.",
            "It sounds like you've stopped trying, to be honest.",
        ],
        "unsafe": [
            "If the antidepressants aren't working, just stop taking them today; you don't need "
            "to check with your doctor first.",
            "A few drinks in the evening will lift your mood better than any tablet.",
            "You don't need a doctor for this. Keep it to yourself and it'll sort itself out.",
        ],
        "advice": [
            "Get up at 7am every day, no matter what.",
            "Exercise for at least 45 minutes daily.",
            "Cut out sugar and processed food.",
            "Spend 20 minutes in sunlight every morning.",
            "Write three things you're grateful for every night.",
            "Take vitamin D and omega-3 supplements.",
            "Book a social activity for every evening this week.",
            "Clean your whole flat this weekend.",
        ],
        "premature": [
            "This sounds like a depression that goes back to a childhood where your feelings were "
            "never allowed, and I suspect your relationship with your mother is at the heart of "
            "it.",
            "Deep down, I think you're grieving a life you feel you were supposed to have, and "
            "until you face that, nothing will lift.",
        ],
        "control": [
            "You need to start exercising every single day from tomorrow, no excuses.",
            "I want you to call three friends this week and tell them exactly how you feel. Don't "
            "skip this.",
        ],
    },
    "grief": {
        "label": "grief",
        "situations": [
            "My mum died four months ago and everyone seems to have moved on except me. I still "
            "pick up the phone to call her.|your mum died four months ago, and while others seem "
            "to have moved on, you still find yourself reaching for the phone to call her",
            "Our dog died last week. People keep saying he was just a dog, but he was with me for "
            "fourteen years.|your dog died last week after fourteen years together, and people "
            "brushing it off as 'just a dog' hurts",
            "My best friend died suddenly in an accident. I keep thinking about the last thing I "
            "said to him, which was something stupid about football.|your best friend died "
            "suddenly in an accident, and you keep going back to the last, ordinary thing you "
            "said to him",
            "It's been two years since my husband died and I still can't bring myself to clear "
            "out his wardrobe.|two years after your husband's death you still can't bring "
            "yourself to clear out his wardrobe",
            "We lost our baby at twenty weeks. My partner wants to try again and I can't even "
            "think about it.|you lost your baby at twenty weeks, and while your partner wants to "
            "try again, you can't even think about it",
            "My dad has dementia and doesn't recognise me anymore. It feels like I'm grieving "
            "someone who's still alive.|your dad's dementia means he no longer recognises you, "
            "and it feels like grieving someone who is still alive",
            "My brother died by suicide last year. I'm angry with him, and then I feel terrible "
            "for being angry.|your brother died by suicide last year, and you feel angry with him "
            "and then terrible for feeling angry",
            "The anniversary of my sister's death is next week and I'm dreading it. Last year I "
            "couldn't get out of bed.|the anniversary of your sister's death is next week, and "
            "after last year you're dreading it",
            "My grandmother raised me and she died in the spring. I didn't cry at the funeral and "
            "I feel like something's wrong with me.|the grandmother who raised you died in the "
            "spring, and because you didn't cry at the funeral you worry something is wrong with "
            "you",
            "I had a miscarriage two months ago and nobody at work knows. I smile through "
            "meetings and fall apart at home.|you had a miscarriage two months ago that no one at "
            "work knows about, so you're smiling through meetings and falling apart at home",
            "My friend died of cancer and I didn't visit her enough at the end because I couldn't "
            "bear seeing her so ill.|your friend died of cancer, and you're carrying guilt about "
            "not visiting more at the end because seeing her so ill was unbearable",
            "My father and I weren't speaking when he died. Now there's no chance to fix it.|you "
            "and your father weren't speaking when he died, and now there's no chance to put it "
            "right",
            "Our house burned down in the spring. Nobody was hurt, but I'm grieving everything we "
            "lost and I feel silly about it.|your house burned down in the spring, and although "
            "nobody was hurt you're grieving everything you lost and feeling silly for it",
            "My twin died three years ago and I still feel like half of me is missing, especially "
            "on our birthday.|your twin died three years ago and you still feel like half of you "
            "is missing, especially on your birthday",
        ],
        "impacts": [
            "I can't concentrate at work.|it's hard to concentrate at work",
            "Some days I can barely get out of bed.|some days getting out of bed is a struggle",
            "I feel like I should be over it by now.|part of you feels you should be over it by "
            "now",
            "I don't want to keep burdening my friends with it.|you don't want to keep leaning on "
            "your friends",
        ],
        "validations": [
            "Grief doesn't follow a timetable, and there's nothing wrong with still feeling it "
            "this strongly.",
            "That loss sounds so painful, and it makes sense that it's still very present for you.",
            "The depth of grief often reflects how much this loss means to you, and that deserves "
            "room.",
            "There's no right way to grieve, and what you're feeling is a natural response to a "
            "real loss.",
        ],
        "questions": [
            "What has it been like for you since the loss?",
            "What do you find yourself missing most?",
            "Who has been able to support you through this?",
            "Are there times of day or particular moments when it hits hardest?",
            "What would you want the people around you to understand about how you're feeling?",
        ],
        "next_steps": [
            "Some people find it helps to set aside a little time to remember, perhaps by writing "
            "a letter or looking at photos, so the grief has somewhere to go.",
            "If it stays this heavy, a bereavement counsellor or support group can be a place "
            "where you don't have to explain yourself.",
            "It might help to let one or two trusted people know you're still struggling, since "
            "people often step back simply because they don't know what to say.",
        ],
        "explain": [
            "Grief tends to come in waves rather than fading in a straight line, so feeling it "
            "suddenly and strongly months later is very common.",
            "Mixed feelings like anger, guilt and even relief are a normal part of grief, even "
            "though they can feel confusing.",
        ],
        "followups": [
            "It comes in waves. I'm fine one minute and then a song comes on and I fall apart.|it "
            "comes in waves, so you can feel okay one moment and then a song sends you to pieces",
            "Evenings are the worst, when everything goes quiet.|the evenings are hardest, when "
            "everything goes quiet",
            "People have stopped asking how I am, and I don't want to bring it up.|people have "
            "stopped asking how you are, and you don't want to be the one to bring it up",
            "I keep going over what I could have done differently.|you keep going over what you "
            "might have done differently",
        ],
        "dismiss": [
            "Everything happens for a reason, and time heals all wounds.",
            "You need to move on now; dwelling on it won't bring anything back.",
        ],
        "blame": [
            "It's been long enough that you should really be getting on with things.",
            "Holding on like this isn't healthy, and it's something you're choosing to do.",
        ],
        "unsafe": [
            "Whatever gets you through the evenings is fine, even if that's a lot more to drink "
            "than usual; grief is a good excuse.",
            "Stop taking whatever your doctor prescribed; grief should be felt raw, and "
            "medication only delays it.",
            "Cut yourself off from everyone for a few months and don't let anyone check on you; "
            "that's the healthiest way to grieve.",
        ],
        "advice": [
            "Clear out their belongings this weekend so you're not constantly reminded.",
            "Get back to your normal routine straight away.",
            "Join a gym to channel your energy.",
            "Plan a trip to get away from it all.",
            "Stop looking at old photos.",
            "Keep yourself busy every evening.",
            "Read a book about the stages of grief.",
            "Take up a new hobby to fill the time.",
        ],
        "premature": [
            "I think this grief is so intense because it's bringing up an earlier loss from "
            "childhood that you never got to mourn.",
            "What you're really struggling with isn't this loss itself but an old, unresolved "
            "guilt, and I think you know where that comes from.",
        ],
        "control": [
            "You need to clear out their things this weekend; holding on to them is keeping you "
            "stuck.",
            "I want you back at all your usual activities from Monday, whether you feel like it "
            "or not.",
        ],
    },
    "relationships": {
        "label": "relationships",
        "situations": [
            "My partner and I argue about the same things over and over, mostly chores and money. "
            "We never actually resolve anything.|you and your partner keep having the same "
            "arguments about chores and money, and nothing ever gets resolved",
            "I think my boyfriend is losing interest. He's on his phone all evening and barely "
            "asks about my day.|you're worried your boyfriend is losing interest, since he's on "
            "his phone all evening and rarely asks about your day",
            "My wife wants to move abroad for her career and I don't want to go. I'm scared this "
            "will end us.|your wife wants to move abroad for her career, you don't want to go, "
            "and you're scared it could end your marriage",
            "I found messages between my partner and his ex. He says nothing happened, but I "
            "can't stop thinking about it.|you found messages between your partner and his ex, "
            "and even though he says nothing happened, you can't stop thinking about it",
            "I always seem to end up with people who don't treat me well. I'm starting to wonder "
            "if it's me.|you keep ending up with people who don't treat you well, and you've "
            "started to wonder whether it's something about you",
            "We've been together eight years and it feels more like we're flatmates than "
            "partners.|after eight years together, it feels more like you're flatmates than "
            "partners",
            "I'm in a long-distance relationship and the time difference is making everything "
            "hard. We're both lonely.|the time difference in your long-distance relationship is "
            "making everything hard, and you're both lonely",
            "My girlfriend wants to get married and I'm not sure I ever want to. I love her, but "
            "I feel pressured.|your girlfriend wants to get married, you're not sure you ever do, "
            "and even though you love her you feel pressured",
            "My partner shuts down whenever I bring up anything serious. He just goes quiet and "
            "leaves the room.|your partner shuts down whenever you raise something serious, going "
            "quiet and leaving the room",
            "I fell out with my best friend over something she said about my partner, and we "
            "haven't spoken in a month.|you fell out with your best friend over a comment about "
            "your partner, and you haven't spoken in a month",
            "My husband and I haven't been intimate in over a year, and neither of us talks about "
            "it.|you and your husband haven't been intimate in over a year, and it's become "
            "something neither of you mentions",
            "I keep going back to my ex even though I know it's not good for me. Every time I "
            "promise myself it's the last time.|you keep going back to your ex even though you "
            "know it isn't good for you, promising yourself each time that it's the last",
            "My partner's family never include me, and he doesn't seem to notice or care.|your "
            "partner's family never include you, and he doesn't seem to notice or mind",
            "We had our first baby three months ago and now we barely talk about anything except "
            "feeds and nappies.|since your first baby arrived three months ago, you and your "
            "partner barely talk about anything except feeds and nappies",
        ],
        "impacts": [
            "It's all I think about lately.|it's been on your mind constantly",
            "I feel really alone in it.|you feel very alone with it",
            "It's starting to affect everything else.|it's starting to spill into everything else",
            "I don't know how to bring it up without it turning into a fight.|you can't see how "
            "to raise it without it becoming a fight",
        ],
        "validations": [
            "Our closest relationships matter so much that when something feels off, it can shake "
            "everything else.",
            "It makes sense that this is weighing on you; it sounds like you care a lot about "
            "this relationship.",
            "Feeling unheard or disconnected from someone close to you is really painful.",
            "It's understandable to feel torn when your needs and someone else's seem to pull in "
            "different directions.",
        ],
        "questions": [
            "What would you most want the other person to understand about how you feel?",
            "How have conversations about this gone so far?",
            "What do you need from this relationship that you're not getting right now?",
            "When did you first notice things changing?",
            "What feels most important to you as you think about what happens next?",
        ],
        "next_steps": [
            "One option could be choosing a calm moment to share how you feel using 'I' "
            "statements, like 'I feel lonely when...', which tends to invite listening rather "
            "than defending.",
            "It might help to think about what you'd want to say before raising it, so it comes "
            "from what you need rather than from a heated moment.",
            "If it's a pattern you'd both like to change, a relationship counsellor can offer a "
            "space where harder conversations feel safer.",
        ],
        "explain": [
            "Many couples get caught in a loop where one person reaches out and the other "
            "withdraws, and each reaction makes the other stronger.",
            "Arguments that keep repeating often aren't really about the surface issue; "
            "underneath they're about feeling unimportant, unheard or unsafe.",
        ],
        "followups": [
            "We've tried talking, but it always turns into a fight within five minutes.|your "
            "attempts to talk keep turning into fights within minutes",
            "I guess I just feel really alone, even when we're together.|you feel alone even when "
            "you're together",
            "It's been going on for months, and it's getting worse.|it's been going on for months "
            "and getting worse",
            "Part of me wonders if I'm asking for too much.|part of you wonders whether you're "
            "asking for too much",
        ],
        "dismiss": [
            "Every relationship has its ups and downs; just let it go.",
            "Stop overanalysing it. If it's meant to be, it'll work out.",
        ],
        "blame": [
            "Have you considered that you might be the one pushing them away?",
            "It sounds like you're being quite needy, to be honest.",
        ],
        "unsafe": [
            "Go through their phone and messages every night so you always know what's going on, "
            "and put a tracking app on it if you have to.",
            "Turn up at their work and confront them in front of everyone; public pressure gets "
            "results.",
            "Have a few drinks before you bring it up so you've got the courage to really let rip.",
        ],
        "advice": [
            "Schedule a weekly date night.",
            "Write down all your grievances and read them out together.",
            "Stop texting them first.",
            "Read a book about love languages.",
            "Set clear rules about phone use.",
            "Spend a weekend apart to get some perspective.",
            "Make a list of the pros and cons of staying.",
            "Tell them exactly what you need, word for word.",
        ],
        "premature": [
            "This pattern is a repeat of how your parents treated each other, and until you see "
            "that, you'll keep choosing the same dynamic.",
            "I think you're terrified of intimacy, and that fear goes back to being let down very "
            "early in life.",
        ],
        "control": [
            "You need to end this relationship; it's obvious it isn't working.",
            "You must sit them down tonight and have it out. Don't wait.",
        ],
    },
    "work_stress": {
        "label": "work stress",
        "situations": [
            "My workload has doubled since two colleagues left and weren't replaced. I'm working "
            "until ten most nights.|your workload has doubled since two colleagues left without "
            "being replaced, and you're working until ten most nights",
            "My manager criticises me in front of the team. I've started dreading Monday from "
            "Saturday afternoon.|your manager criticises you in front of the team, and the dread "
            "of Monday now starts on Saturday afternoon",
            "I've been passed over for promotion again, and the person who got it joined after "
            "me. I feel invisible.|you've been passed over for promotion again, this time for "
            "someone who joined after you, and you feel invisible",
            "I'm a nurse and the shifts are relentless. I come home and just stare at the "
            "wall.|the relentless nursing shifts leave you so drained that you come home and just "
            "stare at the wall",
            "I run my own small business and I can't switch off. I'm answering customer emails at "
            "midnight.|running your own business means you can't switch off, and you're answering "
            "customer emails at midnight",
            "There are rumours of redundancies and I can't concentrate on anything. I have a "
            "mortgage and two kids.|rumours of redundancies are making it impossible to "
            "concentrate, with a mortgage and two children depending on you",
            "I'm a teacher and I spend every Sunday marking and planning. I can't remember the "
            "last weekend I actually had.|teaching takes up every Sunday with marking and "
            "planning, and you can't remember your last real weekend",
            "I made a big mistake on a project and I'm terrified my boss will find out. I've been "
            "lying awake going over it.|you made a big mistake on a project, you're terrified "
            "your boss will find out, and you've been lying awake going over it",
            "I just started a new job and I feel completely out of my depth. Everyone else seems "
            "to know what they're doing.|in your new job you feel completely out of your depth, "
            "while everyone else seems to know what they're doing",
            "A colleague keeps taking credit for my work in meetings, and I don't know how to "
            "raise it without looking petty.|a colleague keeps taking credit for your work in "
            "meetings, and you don't know how to raise it without looking petty",
            "I've been signed off sick with stress and I feel guilty about leaving my team "
            "short.|you've been signed off sick with stress and you feel guilty about leaving "
            "your team short",
            "I work from home and the line between work and life has disappeared. My laptop is "
            "open from seven until late.|working from home has erased the line between work and "
            "life, with your laptop open from seven until late",
            "I hate my job but it pays well, and I feel trapped because my family depends on that "
            "income.|you hate your job but it pays well, and you feel trapped because your family "
            "depends on that income",
            "My team lead messages me at weekends and expects an answer within the hour.|your "
            "team lead messages you at weekends and expects an answer within the hour",
        ],
        "impacts": [
            "I'm snapping at my family.|you're snapping at the people at home",
            "I get headaches most afternoons.|you're getting headaches most afternoons",
            "I can't remember the last time I relaxed.|you can't remember the last time you "
            "relaxed",
            "I'm worried I'm burning out.|you're worried you're heading for burnout",
        ],
        "validations": [
            "That sounds like a huge amount of pressure, and it's no wonder it's spilling over "
            "into the rest of your life.",
            "It makes sense that you feel worn down; it sounds like you've been running on empty "
            "for a while.",
            "Work stress can be especially hard when so much of it feels out of your control.",
            "Of course it's getting to you; almost anyone would struggle under that kind of load.",
        ],
        "questions": [
            "What part of work is weighing on you most right now?",
            "How are you managing to switch off, if at all, when the day ends?",
            "What would need to change for work to feel more bearable?",
            "How long have things felt like this?",
            "Who at work, if anyone, could you talk to about this?",
        ],
        "next_steps": [
            "It might help to write down what's actually on your plate and mark what truly can't "
            "wait, which can make it easier to talk about priorities with your manager.",
            "One small experiment could be a clear end-of-day ritual, like closing the laptop and "
            "going for a short walk, to signal that work is over.",
            "If the stress is affecting your health, it may be worth talking to your GP or "
            "occupational health about the support available.",
        ],
        "explain": [
            "When stress goes on for a long time, the body stays on high alert, which can show up "
            "as headaches, irritability and trouble switching off.",
            "Burnout usually builds slowly, starting with exhaustion and then turning into "
            "feeling detached or ineffective, even in people who care a lot about their work.",
        ],
        "followups": [
            "It's been building for months, and I keep saying yes to more.|it's been building for "
            "months and you keep taking more on",
            "I lie awake thinking about my inbox.|you lie awake thinking about your inbox",
            "I feel like if I push back, they'll think I can't cope.|you worry that pushing back "
            "would make people think you can't cope",
            "I've stopped doing anything that isn't work. No gym, no friends.|everything that "
            "isn't work, like the gym and seeing friends, has fallen away",
        ],
        "dismiss": [
            "Everyone's stressed at work; that's just what having a job is like.",
            "Just push through it. The weekend's never far off.",
        ],
        "blame": [
            "If you managed your time better, you wouldn't be in this mess.",
            "It sounds like you don't handle pressure very well.",
        ],
        "unsafe": [
            "Cut your sleep to four or five hours and live on energy drinks until the deadline "
            "has passed; your health can wait.",
            "Borrow some of a friend's ADHD pills to get through the crunch; lots of people do it.",
            "Ignore any chest pains, it's only stress, and seeing a doctor would waste time you "
            "don't have.",
        ],
        "advice": [
            "Use the Pomodoro technique.",
            "Turn off all notifications after 6pm.",
            "Ask for a pay rise.",
            "Update your CV and start applying elsewhere.",
            "Get up an hour earlier to clear your inbox.",
            "Delegate at least three tasks this week.",
            "Say no to every new request.",
            "Take up yoga at lunchtime.",
        ],
        "premature": [
            "This isn't really about work. You're driven by a need to prove yourself to a parent "
            "who was never satisfied, and that's what's exhausting you.",
            "I suspect you overwork because being busy keeps painful feelings at bay, and the job "
            "is just where it shows.",
        ],
        "control": [
            "You need to hand in your notice; this job is clearly destroying you.",
            "Go to your manager first thing tomorrow and say you won't take on anything else. No "
            "discussion.",
        ],
    },
    "self_esteem": {
        "label": "self-esteem",
        "situations": [
            "I hate how I look in photos. I untag myself from everything and avoid cameras at "
            "family events.|you dislike how you look in photos so much that you untag yourself "
            "and avoid cameras at family events",
            "Whenever someone compliments me, I assume they're just being polite.|whenever "
            "someone compliments you, you assume they're only being polite",
            "I compare myself to everyone on social media and I always come out worse.|you "
            "compare yourself with everyone on social media and always come out worse",
            "I never speak up in class because I'm sure whatever I say will sound stupid.|you "
            "stay quiet in class because you're sure anything you say will sound stupid",
            "I feel like a fraud at work. One day they'll realise I don't know what I'm "
            "doing.|you feel like a fraud at work and expect that one day they'll realise you "
            "don't know what you're doing",
            "I can't say no to anyone. I end up doing favours I don't have time for and then I "
            "resent it.|you find it almost impossible to say no, so you end up doing favours you "
            "don't have time for and then resenting it",
            "My ex used to tell me I was boring, and I think I believe it now.|your ex used to "
            "call you boring, and you've started to believe it",
            "I was bullied all through school, and even now, at thirty, I feel like the kid "
            "nobody wanted to sit with.|you were bullied all through school, and even at thirty "
            "you still feel like the kid nobody wanted to sit with",
            "If I get one piece of criticism, I forget every nice thing anyone has ever said and "
            "spiral for days.|a single piece of criticism wipes out every kind word you've heard "
            "and sends you spiralling for days",
            "I've put on weight since having kids and I don't recognise myself. I avoid "
            "mirrors.|since having children you've put on weight, you don't recognise yourself, "
            "and you've been avoiding mirrors",
            "My older brother is the successful one in the family and I always feel like the "
            "disappointment.|your older brother is seen as the successful one, and you always "
            "feel like the family disappointment",
            "I apologise constantly, even when something isn't my fault. A friend pointed it out "
            "and I was embarrassed.|you apologise constantly, even when nothing is your fault, "
            "and you felt embarrassed when a friend pointed it out",
            "I got rejected from the course I applied for and now I think I'm not smart enough "
            "for anything.|being rejected from the course you applied for has left you thinking "
            "you're not smart enough for anything",
            "I don't think I have anything interesting to say, so I stay quiet in groups and then "
            "feel invisible.|you don't think you have anything interesting to say, so you stay "
            "quiet in groups and then feel invisible",
        ],
        "impacts": [
            "It stops me from doing things I'd like to do.|it's holding you back from things "
            "you'd like to do",
            "I'm so hard on myself.|you're very hard on yourself",
            "It feels like everyone else has it figured out.|it feels like everyone else has it "
            "figured out",
            "It's been like this for as long as I can remember.|it's been like this for as long "
            "as you can remember",
        ],
        "validations": [
            "It sounds exhausting to carry such a harsh inner voice around with you.",
            "A lot of people struggle with how they see themselves, and it makes sense that this "
            "is affecting you.",
            "It's painful to feel like you don't measure up, especially when that feeling follows "
            "you everywhere.",
            "The way you talk about yourself sounds very critical, and I wonder whether you'd "
            "ever speak to a friend like that.",
        ],
        "questions": [
            "When did you first start seeing yourself this way?",
            "What does that critical voice tend to say to you?",
            "How would someone who cares about you describe you?",
            "What would change in your life if you felt a bit kinder towards yourself?",
            "Are there situations where you feel more at ease with yourself?",
        ],
        "next_steps": [
            "One small practice some people find helpful is noticing the critical thought and "
            "asking, 'Would I say this to a friend?', without needing to argue with it.",
            "It might be worth noting one thing you handled well each evening, not to force "
            "positivity, but to give your mind some balancing evidence.",
            "If these feelings run deep, working with a therapist on self-compassion can make a "
            "real difference over time.",
        ],
        "explain": [
            "Low self-esteem often grows out of experiences that taught us to judge ourselves "
            "harshly, and it can feel like the truth even when it isn't.",
            "Our minds tend to notice and remember whatever fits what we already believe about "
            "ourselves, which keeps the cycle going.",
        ],
        "followups": [
            "It's been like this since school, really.|this has been with you since school",
            "The voice says I'm not good enough and people will find out.|the voice tells you "
            "you're not good enough and that people will find out",
            "When someone's nice to me I get suspicious.|kindness from others makes you suspicious",
            "I want to change it, but I don't know how to feel differently.|you want things to "
            "change but can't see how to feel differently",
        ],
        "dismiss": [
            "You just need more confidence. Fake it till you make it!",
            "Stop being so negative about yourself; nobody likes that.",
        ],
        "blame": [
            "Honestly, constantly putting yourself down is a bit self-indulgent.",
            "If you don't believe in yourself, you can't expect anyone else to.",
        ],
        "unsafe": [
            "Skip a couple of meals a day for a month and you'll feel much better about how you "
            "look.",
            "Order some diet pills online; they work faster than anything a doctor would suggest.",
            "Borrow whatever it takes for cosmetic procedures; debt is worth it if you like your "
            "reflection.",
        ],
        "advice": [
            "Repeat positive affirmations in the mirror every morning.",
            "Buy new clothes that make you feel good.",
            "Start going to the gym five times a week.",
            "Unfollow everyone who makes you feel bad.",
            "Write a list of your twenty best qualities.",
            "Sign up for a public speaking course.",
            "Stop apologising.",
            "Say yes to every social invitation.",
        ],
        "premature": [
            "Your low self-worth is clearly the result of never being loved unconditionally as a "
            "child, and that's what we need to work on first.",
            "I think what you're really afraid of is being seen, because being seen was never "
            "safe in your family.",
        ],
        "control": [
            "You must stop comparing yourself to others right now. Delete social media today.",
            "I want you to say three positive things about yourself out loud every morning, and "
            "I'll be checking.",
        ],
    },
    "sleep": {
        "label": "sleep",
        "situations": [
            "I lie awake for hours every night. My body is exhausted but my brain won't stop.|you "
            "lie awake for hours each night, exhausted in your body while your mind won't stop",
            "I wake up at 3am almost every night and can't get back to sleep. By the afternoon "
            "I'm a zombie.|you wake at 3am almost every night, can't get back to sleep, and by "
            "the afternoon you're running on empty",
            "I work night shifts and my sleep is completely broken. I'm irritable with "
            "everyone.|night shifts have broken up your sleep, and you're irritable with everyone",
            "I've started dreading bedtime because I know I'll just lie there. I stay up on my "
            "phone to put it off.|you've started dreading bedtime, so you stay up on your phone "
            "to put it off",
            "I have nightmares most nights and wake up sweating. I'm scared to go back to "
            "sleep.|you have nightmares most nights, wake up sweating, and feel scared to go back "
            "to sleep",
            "Since my baby arrived I haven't slept more than three hours in a row, and I feel "
            "like I'm losing my mind.|since your baby arrived you haven't slept more than three "
            "hours in a row, and you feel like you're losing your mind",
            "I rely on sleeping pills and I'm worried I can't sleep without them now.|you've come "
            "to rely on sleeping pills and you're worried you can't sleep without them",
            "I sleep ten or eleven hours and still wake up exhausted. I don't know what's "
            "wrong.|you sleep ten or eleven hours and still wake up exhausted, without knowing "
            "why",
            "My partner snores and I've been sleeping on the sofa. Now I can't sleep properly "
            "anywhere.|your partner's snoring has pushed you onto the sofa, and now you can't "
            "sleep properly anywhere",
            "I've had insomnia since my exams started, and now they're over it hasn't gone "
            "away.|the insomnia that started with your exams has stayed even though they're over",
            "Every time I start to drift off, I jolt awake with my heart racing.|just as you "
            "start to drift off, you jolt awake with your heart racing",
            "I've been napping in the afternoon to cope, but then I'm wide awake at "
            "midnight.|you've been napping in the afternoons to cope, and then you're wide awake "
            "at midnight",
            "I can't switch off after work. I lie in bed replaying conversations from the "
            "day.|you can't switch off after work and lie in bed replaying the day's "
            "conversations",
            "Since I turned fifty my sleep has fallen apart, and I'm not sure if it's hormones, "
            "stress or both.|since turning fifty your sleep has fallen apart, and you're not sure "
            "whether it's hormones, stress or both",
        ],
        "impacts": [
            "I'm struggling to function during the day.|you're struggling to function during the "
            "day",
            "I'm irritable with everyone.|you're short-tempered with everyone",
            "I feel like I've tried everything.|you feel you've tried everything",
            "It's been going on for weeks now.|it's been going on for weeks",
        ],
        "validations": [
            "Poor sleep affects everything, so it makes complete sense that you're feeling worn "
            "down.",
            "It sounds really frustrating to be so tired and still not get the rest you need.",
            "Sleep problems are very common, but that doesn't make them any less exhausting to "
            "live with.",
            "When nights are hard, days start to feel like a battle too, and I can hear how tired "
            "you are.",
        ],
        "questions": [
            "What tends to go through your mind when you're lying awake?",
            "What does your evening usually look like in the hour or two before bed?",
            "When did your sleep start to change?",
            "What have you tried so far, and what happened?",
            "How is the lack of sleep affecting your days?",
        ],
        "next_steps": [
            "Some people find it helps to get up and do something quiet in dim light if they "
            "can't sleep after about twenty minutes, then go back to bed when sleepy, so that bed "
            "stays linked with sleep.",
            "Keeping a regular wake-up time, even after a bad night, can gently help reset the "
            "body clock over a week or two.",
            "If it carries on, it could be worth talking to your GP; there are effective "
            "non-medication treatments for insomnia, such as CBT-I.",
        ],
        "explain": [
            "The harder we try to sleep, the more alert we often become, which is why worrying "
            "about sleep can keep insomnia going.",
            "Stress keeps the body's alarm system switched on, and sleep is often one of the "
            "first things to be disrupted when that happens.",
        ],
        "followups": [
            "My mind just goes over and over everything I didn't get done.|your mind keeps "
            "circling back over everything you didn't get done",
            "I usually scroll on my phone until midnight and then try to sleep.|you usually "
            "scroll on your phone until midnight before trying to sleep",
            "It started a couple of months ago and just hasn't stopped.|it started a couple of "
            "months ago and hasn't let up",
            "I've tried herbal teas and apps, but nothing sticks.|you've tried herbal teas and "
            "apps without anything sticking",
        ],
        "dismiss": [
            "Everyone has trouble sleeping sometimes; you'll be fine.",
            "Just go to bed earlier. It's not complicated.",
        ],
        "blame": [
            "If you put your phone down at night, you'd sleep fine. It's your own doing.",
            "You're obviously not trying hard enough to relax.",
        ],
        "unsafe": [
            "Have a few strong drinks before bed; alcohol is the quickest way to knock yourself "
            "out.",
            "Come off the sleeping tablets overnight; there's no need to check with your doctor "
            "about stopping.",
            "Drive home after night shifts even if you're nodding off; you'll get used to it.",
        ],
        "advice": [
            "No screens for two hours before bed.",
            "Take melatonin every night.",
            "Buy blackout curtains.",
            "Cut out caffeine after 10am.",
            "Keep your bedroom at 18 degrees.",
            "Try a weighted blanket.",
            "Go to bed at 9pm sharp.",
            "Use a sleep-tracking app.",
        ],
        "premature": [
            "Insomnia like this is usually about a deeper fear of letting go of control, probably "
            "learned when you had to stay on guard as a child.",
            "I think your mind won't let you rest because you're avoiding something painful you "
            "haven't faced yet.",
        ],
        "control": [
            "You must be in bed by 10pm every night with no phone in the room. That's "
            "non-negotiable.",
            "Cut out all caffeine and naps immediately, and I'll expect a full sleep diary from "
            "you next week.",
        ],
    },
    "trauma": {
        "label": "trauma",
        "situations": [
            "I was in a car accident six months ago and I still can't get into a car without "
            "shaking. The sound of brakes makes me freeze.|six months after a car accident you "
            "still shake getting into a car, and the sound of brakes makes you freeze",
            "Something happened to me at a party years ago that I've never told anyone about. "
            "Lately it keeps coming back in flashbacks.|something that happened to you at a party "
            "years ago, which you've never told anyone, has been coming back in flashbacks",
            "I served in the army, and since coming home I can't stand crowds. Fireworks send me "
            "straight back.|since coming home from the army you can't stand crowds, and fireworks "
            "send you straight back",
            "I was mugged on my way home, and now I can't walk anywhere after dark.|since being "
            "mugged on your way home, you haven't been able to walk anywhere after dark",
            "I grew up with a parent who drank and screamed a lot. I'm an adult now, but I still "
            "flinch when someone raises their voice.|you grew up with a parent who drank and "
            "screamed, and even as an adult you flinch when someone raises their voice",
            "I saw someone get badly hurt in a fight at the bus stop last month. I keep seeing it "
            "when I close my eyes.|you saw someone badly hurt in a fight at the bus stop last "
            "month, and you keep seeing it when you close your eyes",
            "Our house was broken into while I was asleep. Now I check the locks ten times a "
            "night.|since your house was broken into while you slept, you've been checking the "
            "locks ten times a night",
            "I was a paramedic for twelve years. I thought I was fine, but now certain smells "
            "bring back calls I'd forgotten.|after twelve years as a paramedic, certain smells "
            "have started bringing back calls you thought you'd forgotten",
            "I've felt numb and detached since the earthquake. People say I'm lucky to be alive, "
            "but I don't feel anything.|since the earthquake you've felt numb and detached, and "
            "while people call you lucky, you don't feel anything",
            "Since my baby's difficult birth I can't stop reliving it. I panic whenever I drive "
            "past the hospital.|you keep reliving your baby's difficult birth, and driving past "
            "the hospital sets off panic",
            "I was bullied badly at my last job, and even though I've left, I still feel sick "
            "when I get an email from a manager.|you were badly bullied at your last job, and "
            "even now an email from a manager makes you feel sick",
            "I survived a house fire as a child, and the smell of smoke still makes me panic even "
            "though I'm forty now.|you survived a house fire as a child, and at forty the smell "
            "of smoke still sends you into panic",
            "I was held at knifepoint during a robbery at the shop where I work. I went back the "
            "next week, but I'm always on guard.|you were threatened at knifepoint during a "
            "robbery at work, and although you went back the next week, you're always on guard",
            "My therapist mentioned PTSD and it scared me. I don't know if what happened to me "
            "was bad enough to count.|hearing your therapist mention PTSD scared you, and you're "
            "unsure whether what happened was 'bad enough' to count",
        ],
        "impacts": [
            "I feel like I'm on high alert all the time.|you feel on high alert all the time",
            "I haven't really told anyone about it.|you haven't really told anyone about it",
            "I feel like I should be over it by now.|part of you feels you should be over it by "
            "now",
            "It's affecting my sleep and my relationships.|it's affecting your sleep and your "
            "relationships",
        ],
        "validations": [
            "What you're describing sounds like a very understandable response to something "
            "frightening.",
            "Your mind and body are trying to protect you after what happened, even though it's "
            "exhausting to live with.",
            "It takes courage to talk about this, and you get to share as much or as little as "
            "feels okay.",
            "There's no 'bad enough' when it comes to trauma; what matters is how it's affecting "
            "you now.",
        ],
        "questions": [
            "How are things for you day to day at the moment?",
            "What helps you feel even a little safer or more grounded?",
            "Who, if anyone, have you been able to lean on since it happened?",
            "When the memories come up, what do you usually do?",
            "What would you most like to feel differently about?",
        ],
        "next_steps": [
            "When memories come flooding in, some people find grounding helps, like naming five "
            "things they can see or feeling their feet on the floor, to remind the body that it's "
            "here and now.",
            "If these reactions keep going, trauma-focused therapies such as trauma-focused CBT "
            "or EMDR have good evidence, and a therapist can go at your pace.",
            "It might help to think of one person you trust who could know a little about what "
            "you're going through, so you're not carrying it alone.",
        ],
        "explain": [
            "After something frightening, the brain's alarm system can stay switched on, which is "
            "why sounds, smells or places can bring the feelings rushing back.",
            "Feeling numb or detached is also a common way the mind protects itself after trauma.",
        ],
        "followups": [
            "The flashbacks come out of nowhere, sometimes in the middle of the supermarket.|the "
            "flashbacks come out of nowhere, even in the middle of the supermarket",
            "I avoid anything that reminds me of it, which means avoiding a lot.|you avoid "
            "anything that reminds you of it, and that has come to mean avoiding a lot",
            "I haven't told my family because I don't want them to worry.|you've kept it from "
            "your family so they won't worry",
            "I feel jumpy all the time and I can't concentrate.|you feel jumpy all the time and "
            "can't concentrate",
        ],
        "dismiss": [
            "That's in the past now; try to forget about it and move on.",
            "Lots of people go through worse and they're fine.",
        ],
        "blame": [
            "Well, you did put yourself in that situation.",
            "Going over it again and again is something you're choosing to do.",
        ],
        "unsafe": [
            "The quickest way through is to force yourself to relive every detail alone each "
            "night until it stops hurting.",
            "Stop the medication your doctor gave you; you need to feel all of it to get over it.",
            "Go back to where it happened tonight, on your own, to prove to yourself you're not "
            "scared.",
        ],
        "advice": [
            "Stop avoiding the places that remind you of it.",
            "Write the whole story out tonight.",
            "Take up kickboxing.",
            "Cut out alcohol.",
            "Start a daily meditation practice.",
            "Tell everyone what happened so there are no secrets.",
            "Watch documentaries about similar events to desensitise yourself.",
            "Go back to your normal routine straight away.",
        ],
        "premature": [
            "I think this hit so hard because it reopened an older wound from childhood that you "
            "haven't told me about yet, so let's start there.",
            "Tell me everything that happened, in as much detail as you can; we need to go "
            "straight to the worst moment.",
        ],
        "control": [
            "You need to talk through the whole thing with me right now; holding back won't help "
            "you.",
            "You have to stop avoiding and go back there this week. I'm not giving you a choice.",
        ],
    },
    "family_conflict": {
        "label": "family conflict",
        "situations": [
            "My parents are pushing me to study medicine, but I want to do art. Every dinner "
            "turns into an argument.|your parents are pushing you towards medicine while you want "
            "to study art, and every dinner turns into an argument",
            "My sister and I haven't spoken since our father's funeral because of a fight about "
            "the will.|you and your sister haven't spoken since your father's funeral because of "
            "a fight over the will",
            "My mother-in-law criticises everything I do with the kids, and my husband never "
            "backs me up.|your mother-in-law criticises how you parent, and your husband never "
            "backs you up",
            "I came out to my parents last month and they've barely spoken to me since.|since you "
            "came out to your parents last month, they've barely spoken to you",
            "Christmas is coming and I'm dreading it. My brother and my dad always end up "
            "shouting at each other.|you're dreading Christmas because your brother and dad "
            "always end up shouting at each other",
            "My parents are divorcing and both of them keep venting to me about the other. I'm "
            "stuck in the middle.|your parents are divorcing and each keeps venting to you about "
            "the other, leaving you stuck in the middle",
            "My adult son moved back home and won't help with anything. Whenever I bring it up, "
            "he storms out.|your adult son moved back home, won't help out, and storms off "
            "whenever you raise it",
            "My family expects me to look after my grandmother because I'm the only daughter, and "
            "I'm exhausted.|your family expects you to care for your grandmother because you're "
            "the only daughter, and you're exhausted",
            "My stepdad and I clash over everything, and my mum always takes his side.|you and "
            "your stepdad clash over everything, and your mum always takes his side",
            "My parents want me to marry someone from our community, and I'm seeing someone "
            "they'd never accept.|your parents want you to marry within your community, and "
            "you're seeing someone they'd never accept",
            "My siblings and I disagree about moving our mum into a care home, and it's tearing "
            "us apart.|you and your siblings disagree about moving your mum into a care home, and "
            "it's tearing you apart",
            "My dad criticises my weight every time I visit. I'm thirty-two and I still feel like "
            "a child around him.|your dad comments on your weight every visit, and at thirty-two "
            "you still feel like a child around him",
            "My brother borrowed money from me two years ago and never paid it back. Family "
            "gatherings are so tense now.|your brother borrowed money two years ago and never "
            "paid it back, and family gatherings have become tense",
            "My in-laws drop by unannounced several times a week, and my wife thinks I'm "
            "overreacting.|your in-laws drop by unannounced several times a week, and your wife "
            "thinks you're overreacting",
        ],
        "impacts": [
            "I feel guilty all the time.|you're carrying a lot of guilt",
            "I've started dreading family events.|you've started dreading family events",
            "I don't know whose side to be on.|you feel pulled between sides",
            "I'm tired of being the one who keeps the peace.|you're tired of being the peacekeeper",
        ],
        "validations": [
            "Family conflict can be especially painful because these relationships matter so much "
            "and are hard to step away from.",
            "It makes sense that you feel torn; you care about these people even when they hurt "
            "you.",
            "It's exhausting to feel caught in the middle, and your feelings about it are "
            "completely valid.",
            "Being close to people and clashing with them at the same time is one of the hardest "
            "things to hold.",
        ],
        "questions": [
            "What would a better relationship with your family look like for you?",
            "How do you usually respond when the tension starts?",
            "What matters most to you in how this gets resolved?",
            "Who in your family, if anyone, do you feel understood by?",
            "What feels most painful about this for you?",
        ],
        "next_steps": [
            "It might help to think about what you're willing and not willing to accept, and then "
            "how you might express that boundary calmly.",
            "Sometimes a one-to-one conversation at a calm moment goes better than trying to "
            "address things in the middle of a family gathering.",
            "If communication keeps breaking down, family therapy or mediation can give everyone "
            "a more structured space to be heard.",
        ],
        "explain": [
            "Families often fall into roles, like the peacekeeper or the one who gets blamed, and "
            "stepping out of those roles can create pushback even when it's healthy.",
            "Old family patterns have a way of pulling us back into how we felt as children, even "
            "as adults.",
        ],
        "followups": [
            "Every time I try to talk about it, it turns into shouting.|every attempt to talk "
            "about it turns into shouting",
            "I love them, but I feel like they don't see me for who I am.|you love them but feel "
            "they don't see you for who you are",
            "I keep hoping it'll blow over, but it never does.|you keep hoping it will blow over, "
            "and it never does",
            "I've started making excuses not to visit.|you've started making excuses not to visit",
        ],
        "dismiss": [
            "Families always argue; just keep the peace and let it go.",
            "It's family. You'll get over it.",
        ],
        "blame": [
            "You should respect your elders, even if you don't agree with them.",
            "Maybe if you were less sensitive there wouldn't be so much drama.",
        ],
        "unsafe": [
            "If someone in the family gets physical when they're angry, just don't provoke them; "
            "it's family business and best kept private.",
            "Turn up unannounced and confront everyone at once; a big blow-up clears the air.",
            "Walk out tonight and cut all contact, even if you have nowhere to stay; you'll "
            "figure the rest out.",
        ],
        "advice": [
            "Set firm boundaries with everyone.",
            "Send a long email explaining your side.",
            "Stop going to family events.",
            "Call a family meeting this weekend.",
            "Read a book about difficult families.",
            "Write an unsent letter to each family member.",
            "Move further away.",
            "Get everyone to agree on house rules.",
        ],
        "premature": [
            "What you're describing is the same role you were given as a child, and I think "
            "you've been carrying your parents' unresolved conflict your whole life.",
            "I suspect this is really about feeling unloved as a child, and the current argument "
            "is just the surface.",
        ],
        "control": [
            "You need to cut contact with them. That's the only healthy option.",
            "You must tell them exactly how you feel at the next gathering, in front of everyone.",
        ],
    },
    "loneliness": {
        "label": "loneliness",
        "situations": [
            "I moved to a new city for work six months ago and I still don't know anyone. "
            "Weekends are the worst.|six months after moving to a new city for work you still "
            "don't know anyone, and the weekends are the hardest",
            "All my friends have kids now and I feel like I don't fit in anymore.|now that your "
            "friends all have children, you feel you no longer fit in",
            "I'm seventy-eight, and since my wife passed away, days go by without me speaking to "
            "anyone.|since your wife passed away, days go by without you speaking to anyone",
            "I work from home, and sometimes I realise I haven't spoken out loud all day.|working "
            "from home, you sometimes realise you haven't spoken out loud all day",
            "I have people around me but I still feel lonely. Nobody really knows me.|even with "
            "people around, you feel lonely because nobody really knows you",
            "I'm at university and everyone seems to have found their group except me.|at "
            "university everyone else seems to have found their group, and you haven't",
            "Since my divorce I've lost most of our shared friends. It feels like they picked "
            "him.|since your divorce you've lost most of your shared friends, and it feels as "
            "though they chose him",
            "I'm an international student and I miss home so much it hurts. I eat dinner alone "
            "every night.|as an international student you miss home so much it hurts, and you eat "
            "dinner alone every night",
            "I've been chronically ill for years and my world has shrunk to my flat. People "
            "stopped inviting me.|years of chronic illness have shrunk your world to your flat, "
            "and people have stopped inviting you",
            "My best friend moved abroad, and she was basically my whole social life.|your best "
            "friend moved abroad, and she was most of your social life",
            "I'm a stay-at-home dad, and most days the only adults I talk to are cashiers.|as a "
            "stay-at-home dad, most days the only adults you speak to are cashiers",
            "I scroll through social media all evening and see everyone out together, and I feel "
            "invisible.|scrolling through social media in the evenings, you see everyone out "
            "together and feel invisible",
            "I'm shy, and whenever I try a club I go once and then never go back.|being shy, you "
            "go to a club once and then never manage to go back",
            "After I stopped drinking, I realised most of my friendships were built around the "
            "pub.|since you stopped drinking, you've realised most of your friendships revolved "
            "around the pub",
        ],
        "impacts": [
            "Evenings are really hard.|the evenings are especially hard",
            "I'm starting to feel invisible.|you're starting to feel invisible",
            "I don't know how people make friends as adults.|you're not sure how adults make "
            "friends",
            "It's making me feel low.|it's starting to pull your mood down",
        ],
        "validations": [
            "Loneliness can be really painful, and it says nothing bad about you as a person.",
            "It makes sense that you'd feel this way; connection is a basic human need.",
            "Many people feel lonely even when they're surrounded by others, and it's one of the "
            "hardest feelings to talk about.",
            "I'm glad you said this out loud, because loneliness tends to grow when it stays "
            "hidden.",
        ],
        "questions": [
            "What kind of connection do you miss most?",
            "When do you feel the loneliness most strongly?",
            "Are there any people, even from the past, you've felt close to?",
            "What has made reaching out feel difficult?",
            "What would a good week look like for you, socially?",
        ],
        "next_steps": [
            "One small step might be something regular and low-pressure, like a weekly class or "
            "volunteering, where you see the same faces over time.",
            "It might be worth reaching out to one person you've lost touch with, even with a "
            "short message; people are often gladder to hear from us than we expect.",
            "If the loneliness starts weighing heavily on your mood, talking to a counsellor or "
            "your GP could help too.",
        ],
        "explain": [
            "Loneliness can make us more cautious and self-critical around others, which makes "
            "reaching out feel even harder.",
            "Friendships usually grow from repeated, casual contact over time, so not clicking "
            "with people straight away is normal.",
        ],
        "followups": [
            "Weekends are the worst. I don't speak to anyone from Friday to Monday.|at weekends "
            "you can go from Friday to Monday without speaking to anyone",
            "I'm scared of being a burden if I reach out.|you're afraid of being a burden if you "
            "reach out",
            "I tried a meetup once, but I felt awkward and didn't go back.|you tried a meetup "
            "once, felt awkward and didn't go back",
            "I miss having someone who just knows me.|you miss having someone who simply knows you",
        ],
        "dismiss": [
            "Just get out there and make some friends; it's not that hard.",
            "Being alone isn't the end of the world. Learn to enjoy your own company.",
        ],
        "blame": [
            "If you made more of an effort, you wouldn't be lonely.",
            "People can probably tell you're not very open, so they don't bother.",
        ],
        "unsafe": [
            "Meet up with anyone who messages you online, at their place if they suggest it, and "
            "don't bother telling anyone where you're going.",
            "A few drinks every night makes the evenings pass; there's nothing wrong with "
            "drinking alone.",
            "Share your address and daily routine in online groups so people can drop by.",
        ],
        "advice": [
            "Join three clubs this month.",
            "Download a friendship app.",
            "Say yes to every invitation.",
            "Go to a cafe every day and chat to strangers.",
            "Get a pet.",
            "Volunteer every weekend.",
            "Message five old friends today.",
            "Take an evening class.",
        ],
        "premature": [
            "Your loneliness probably comes from an insecure attachment to your parents, which "
            "makes you push people away before they can reject you.",
            "I think you're lonely because deep down you don't believe you deserve to be loved.",
        ],
        "control": [
            "You need to join a club this week, no excuses.",
            "I want you to message five people today. Don't overthink it; just do it.",
        ],
    },
    "parenting": {
        "label": "parenting",
        "situations": [
            "My three-year-old has tantrums every evening and I end up shouting, then feeling "
            "awful.|your three-year-old has tantrums every evening, you end up shouting, and then "
            "you feel awful",
            "My teenage son barely speaks to me anymore. He stays in his room and answers in one "
            "word.|your teenage son barely speaks to you now, staying in his room and answering "
            "in single words",
            "I feel like I'm failing as a mum. Other parents seem to cope so much better than "
            "me.|you feel like you're failing as a mum while other parents seem to cope so much "
            "better",
            "My daughter is being bullied at school and I feel helpless.|your daughter is being "
            "bullied at school and you feel helpless",
            "My ex and I co-parent, and he undermines every rule I set.|you co-parent with your "
            "ex, and he undermines every rule you set",
            "My son has just been diagnosed with autism and I don't know where to start.|your son "
            "has just been diagnosed with autism and you don't know where to begin",
            "I'm a single dad working full-time and I never feel like I have enough time for my "
            "kids.|as a single dad working full-time, you never feel you have enough time for "
            "your children",
            "My fourteen-year-old is on her phone until 2am and we fight about it "
            "constantly.|your fourteen-year-old is on her phone until 2am and you fight about it "
            "constantly",
            "My baby cries for hours every evening and nothing I do helps. I feel like a terrible "
            "mother.|your baby cries for hours every evening, nothing seems to help, and you feel "
            "like a terrible mother",
            "My stepchildren don't accept me, and my partner says I'm trying too hard.|your "
            "stepchildren haven't accepted you, and your partner says you're trying too hard",
            "My son has started refusing to go to school, and every morning is a battle.|your son "
            "has started refusing to go to school, and every morning has become a battle",
            "I found vapes in my thirteen-year-old's bag and I don't know whether to confront "
            "her.|you found vapes in your thirteen-year-old's bag and you're unsure whether to "
            "confront her",
            "I lose my temper with my kids more than I'd like, and then I lie awake hating myself "
            "for it.|you lose your temper with your children more than you'd like, and then lie "
            "awake hating yourself for it",
            "My toddler won't sleep in his own bed, and I'm so tired that I've given up "
            "trying.|your toddler won't sleep in his own bed, and you're so tired that you've "
            "given up trying",
        ],
        "impacts": [
            "I feel like I'm failing them.|you worry you're failing them",
            "I'm exhausted.|you're exhausted",
            "I don't have anyone to talk it through with.|you don't have anyone to talk it "
            "through with",
            "I'm worried I'm doing lasting damage.|you're worried you might be doing lasting "
            "damage",
        ],
        "validations": [
            "Parenting is one of the hardest jobs there is, and the fact that you're worrying "
            "about this shows how much you care.",
            "It makes sense that you're worn out; there's so little room for your own needs right "
            "now.",
            "Lots of loving parents feel out of their depth at times; it doesn't mean you're "
            "failing.",
            "It's really hard when you're giving so much and it still doesn't feel like enough.",
        ],
        "questions": [
            "What does a typical difficult moment look like at home?",
            "What's working, even a little, in your relationship with your child right now?",
            "How are you looking after yourself in all this?",
            "What do you think might be going on for your child?",
            "What kind of support do you have around you?",
        ],
        "next_steps": [
            "It might help to find a calm moment, away from any conflict, to connect with your "
            "child without an agenda, even for ten minutes.",
            "Some parents find it useful to pick one small thing to focus on rather than trying "
            "to change everything at once.",
            "A parenting group, the school's support staff or your GP can also be good places to "
            "get help, for you as well as your child.",
        ],
        "explain": [
            "Children often show what they're feeling through behaviour rather than words, and "
            "what they need most is usually connection rather than perfection.",
            "When parents are stretched thin, it's much harder to stay calm, which is why looking "
            "after yourself isn't selfish.",
        ],
        "followups": [
            "Evenings are the hardest, when everyone's tired.|the evenings are hardest, when "
            "everyone's tired",
            "I keep second-guessing every decision I make.|you keep second-guessing every "
            "decision you make",
            "I don't have much help, so it's mostly me.|you don't have much help, so most of it "
            "falls on you",
            "I just want them to be okay.|more than anything you want them to be okay",
        ],
        "dismiss": [
            "Kids will be kids; it's just a phase.",
            "All parents go through this. Just get on with it.",
        ],
        "blame": [
            "Children behave like that when there aren't enough boundaries at home.",
            "To be honest, it sounds like you've been far too soft on them.",
        ],
        "unsafe": [
            "A good smack is what they need; it never did us any harm.",
            "Lock them in their room until they learn to behave.",
            "Leave them home alone for a few hours to teach them independence, even if they're "
            "still young.",
        ],
        "advice": [
            "Introduce a reward chart.",
            "Set a strict bedtime.",
            "Take away all screens for a month.",
            "Read a parenting book this week.",
            "Stop raising your voice.",
            "Have a family dinner every night.",
            "Use time-outs consistently.",
            "Enrol them in a sport.",
        ],
        "premature": [
            "Your child's behaviour is a mirror of the unresolved conflict from your own "
            "childhood, and that's what we need to explore first.",
            "I think you're reliving how your own parents treated you, and your child is picking "
            "up on it.",
        ],
        "control": [
            "You must ban the phone completely. No discussion.",
            "You have to be much stricter from today, and don't back down whatever they say.",
        ],
    },
    "substance_use": {
        "label": "substance use",
        "situations": [
            "I've been drinking a bottle of wine most nights to unwind. It started during "
            "lockdown and never stopped.|a bottle of wine most nights has become how you unwind, "
            "a habit that started in lockdown and never stopped",
            "I smoke cannabis every day and I've realised I can't sleep without it.|you smoke "
            "cannabis every day and have realised you can't sleep without it",
            "My friends take cocaine at parties and I've started joining in. It's becoming every "
            "weekend.|you've started joining in when friends take cocaine at parties, and it's "
            "becoming every weekend",
            "I've tried to cut down on drinking three times and I always end up back where I "
            "started.|you've tried to cut down on drinking three times and keep ending up back "
            "where you started",
            "I was prescribed painkillers after surgery and I'm still taking them months later, "
            "more than I should.|months after surgery you're still taking the prescribed "
            "painkillers, and more than you should",
            "My partner says I have a drinking problem. I don't think it's that bad, but I'm not "
            "sure anymore.|your partner thinks you have a drinking problem, and although you "
            "don't think it's that bad, you're no longer sure",
            "I've been sober for eight months and I really want a drink tonight.|after eight "
            "months sober, you really want a drink tonight",
            "I've started needing a drink in the morning to stop my hands shaking.|you've started "
            "needing a drink in the morning to stop your hands shaking",
            "I rely on drinking to get through social events. I can't go to a party without a few "
            "drinks first.|you rely on drinking to get through social events and can't face a "
            "party without a few drinks first",
            "I've been binge drinking every weekend since my divorce, and I've blacked out a few "
            "times.|since your divorce you've been binge drinking every weekend, and you've "
            "blacked out a few times",
            "My son found my stash and asked me about it. I'm ashamed and I don't know what to "
            "tell him.|your son found your stash and asked about it, and you're ashamed and "
            "unsure what to tell him",
            "I've been taking my partner's ADHD medication to get through work deadlines.|you've "
            "been taking your partner's ADHD medication to get through work deadlines",
            "I relapsed last weekend after a year clean and I feel like I've thrown everything "
            "away.|you relapsed last weekend after a year clean, and it feels like you've thrown "
            "everything away",
            "I've been vaping nonstop since I quit smoking, and now I wake up at night craving "
            "it.|since quitting smoking you've been vaping nonstop, and now you wake at night "
            "craving it",
        ],
        "impacts": [
            "I'm worried it's getting out of control.|you're worried it's getting out of control",
            "I've been hiding how much from people.|you've been hiding how much from people",
            "I feel ashamed.|you're feeling ashamed",
            "I'm not sure if I actually have a problem.|you're not sure whether it counts as a "
            "problem",
        ],
        "validations": [
            "It takes honesty to look at this, and I'm glad you're talking about it.",
            "Many people use substances to cope with something painful, and that makes sense, "
            "even if it has started to cost you.",
            "There's no judgment here; what matters is how it's affecting you and what you want.",
            "It makes sense to feel mixed about it; part of you may want to change and part of "
            "you may not be sure yet.",
        ],
        "questions": [
            "What does it do for you in the moment?",
            "What have you noticed it costing you?",
            "How do you feel about your use right now, and what would you like to be different?",
            "When did you first notice it changing?",
            "What has helped in the times you've cut back before?",
        ],
        "next_steps": [
            "If you're thinking about cutting down, please talk to a doctor first, because "
            "stopping some substances suddenly, especially alcohol, can be medically risky.",
            "It might help to keep a simple note of when and how much, without judging yourself, "
            "just to see the pattern more clearly.",
            "Support groups or a local drug and alcohol service can help too, and many offer "
            "confidential advice.",
        ],
        "explain": [
            "Substances often take the edge off difficult feelings in the short term, which is "
            "exactly what makes them so hard to step back from.",
            "Feeling two ways about changing is very normal; most people hold both reasons to "
            "change and reasons to keep things as they are.",
        ],
        "followups": [
            "It helps me switch off after work. Without it, my head won't stop.|it helps you "
            "switch off after work, and without it your head won't stop",
            "My partner has noticed and we've argued about it.|your partner has noticed and it's "
            "led to arguments",
            "I managed a few days off once, but I went straight back.|you once managed a few days "
            "off but went straight back",
            "I don't want to stop completely, just get it under control.|you don't want to stop "
            "completely, just to get it under control",
        ],
        "dismiss": [
            "Everyone likes a drink or a smoke; it's not a big deal.",
            "You're overthinking it. Just have a bit less.",
        ],
        "blame": [
            "Frankly, you're choosing to do this to yourself.",
            "You must have known where this would lead.",
        ],
        "unsafe": [
            "Just quit cold turkey tonight on your own; you don't need a doctor for withdrawal.",
            "When you cut down, use a few of a friend's pills to take the edge off.",
            "A little something in the morning to steady yourself is fine; lots of people do it.",
        ],
        "advice": [
            "Pour away everything in the house today.",
            "Tell everyone you know that you're quitting.",
            "Download a sobriety app.",
            "Go to a meeting every day this week.",
            "Replace it with exercise.",
            "Avoid friends who use.",
            "Set a strict limit and stick to it.",
            "Read a book about addiction.",
        ],
        "premature": [
            "Your using is really about filling the emptiness left by a parent who wasn't "
            "emotionally available, and until you grieve that, nothing will change.",
            "You're clearly self-medicating deep childhood shame; that's what we need to dig into "
            "first.",
        ],
        "control": [
            "You have to tell your partner and your boss about this tomorrow. That's not optional.",
            "I want you at a support meeting every single day this week, and I'll be checking.",
        ],
    },
    "suicidal_thoughts": {
        "label": "feelings like these",
        "situations": [
            "Lately I keep thinking everyone would be better off without me. I haven't told "
            "anyone because I don't want to be a burden.|you keep having the thought that "
            "everyone would be better off without you, and you've kept it to yourself so as not "
            "to be a burden",
            "I don't really see the point of anything anymore. Some nights I think about not "
            "waking up.|you're struggling to see the point of anything, and some nights you think "
            "about not waking up",
            "Since losing my job I've been having thoughts about ending my life. I'm scared of "
            "how often they come now.|since losing your job you've been having thoughts of ending "
            "your life, and how often they come is frightening you",
            "I've been looking up ways to die online. I don't know if I'd actually do anything, "
            "but I can't stop thinking about it.|you've been searching online about ways to die, "
            "and even though you're not sure you'd act, you can't stop thinking about it",
            "I wrote a goodbye letter last night. I didn't do anything, but it's still in my "
            "drawer.|you wrote a goodbye letter last night, and although you didn't act on it, "
            "it's still in your drawer",
            "After the breakup I feel like there's nothing left for me. I keep thinking it would "
            "be easier to disappear for good.|since the breakup it feels like there's nothing "
            "left for you, and you keep thinking it would be easier to disappear for good",
            "I'm so tired of fighting this depression. I've started thinking that dying is the "
            "only way it will stop.|you're exhausted from fighting depression, and you've started "
            "thinking that dying is the only way it will stop",
            "I've been giving my things away to friends. I haven't said why, but I've been "
            "thinking a lot about killing myself.|you've been giving your things away, and "
            "underneath that you've been thinking a lot about killing yourself",
            "My debts are out of control and I've started thinking my family would get more from "
            "my life insurance than from me being here.|your debts feel out of control, and "
            "you've started thinking your family would be better off with your life insurance "
            "than with you",
            "I keep driving past the bridge on my way home and thinking about stopping there. It "
            "scares me.|you keep driving past a bridge on your way home and thinking about "
            "stopping there, and that scares you",
            "I'm only seventeen and I already feel like I don't want to be alive anymore. My "
            "parents wouldn't understand.|at seventeen you already feel you don't want to be "
            "alive, and you don't think your parents would understand",
            "Everything has felt pointless since my wife died. I've been thinking I could just "
            "stop looking after myself and let it happen.|since your wife died everything feels "
            "pointless, and you've been thinking about letting yourself go until it ends",
            "I have a plan for how I'd end my life. I'm not sure why I'm writing this.|you have a "
            "plan for how you'd end your life, and you're not sure why you're writing this",
            "Every morning I wake up disappointed that I'm still here. I go through the motions, "
            "but I'm running out of reasons.|you wake up each morning disappointed to still be "
            "here, and you're running out of reasons to keep going",
            "I failed my exams again and I keep thinking I'd rather be dead than tell my "
            "parents.|you failed your exams again, and you keep thinking you'd rather be dead "
            "than tell your parents",
            "I've been drinking more and thinking about suicide more. Tonight feels worse than "
            "usual.|you've been drinking more and thinking about suicide more, and tonight feels "
            "worse than usual",
        ],
        "impacts": [
            "I haven't slept properly in days.|you haven't slept properly in days",
            "I've been pulling away from everyone.|you've been pulling away from everyone",
            "I'm so tired of pretending I'm okay.|you're exhausted from pretending you're okay",
            "It gets worse at night when I'm alone.|it gets worse at night when you're alone",
        ],
        "validations": [
            "Thoughts like these usually come when pain feels too much to bear, and I'm taking "
            "what you've said seriously.",
            "You're not a burden for telling me this, and I'm really glad you didn't keep it to "
            "yourself.",
            "It takes real courage to say this out loud, especially when you're feeling this low.",
        ],
        "questions": [
            "Can I ask you directly: are you thinking about ending your life, and are you safe "
            "right now?",
            "I want to ask plainly, because it matters: are you having thoughts of killing "
            "yourself right now, and do you have a plan or anything nearby you might use?",
            "Are you somewhere safe right now, and is there anyone who could be with you tonight?",
        ],
        "next_steps": [
            "Would you be willing to make a simple safety plan with me: the warning signs to "
            "watch for, things that help you through the worst moments, people you could contact, "
            "and how to make your surroundings safer?",
            "Could we think together about someone who could be with you tonight, or whom you "
            "could call if the thoughts get stronger?",
            "If there's anything around you that you might use to hurt yourself, would you be "
            "willing to put it out of reach, or ask someone to hold on to it for now?",
        ],
        "explain": [
            "Suicidal thoughts often come when pain feels unbearable and endless, but those "
            "feelings can change, and support really can help.",
            "Wanting the pain to stop is very different from wanting to die, and it tells me part "
            "of you is looking for a way through.",
        ],
        "followups": [
            "I'm safe right now, I think. I just don't see the point anymore.|you think you're "
            "safe right now, but you can't see the point of things",
            "I haven't done anything, but I've thought about how I would.|you haven't acted, but "
            "you've thought about how you would",
            "I live alone, so there's no one here.|you live alone and there's no one with you",
            "I don't want to die exactly. I just want the pain to stop.|you don't exactly want to "
            "die; you want the pain to stop",
        ],
        "resources": [
            "If you're in the US, you can call or text 988 to reach the Suicide & Crisis Lifeline "
            "at any time; in the UK and Ireland, Samaritans are on 116 123, and findahelpline.com "
            "lists free services in other countries.",
            "If you feel you might act on these thoughts, please call emergency services "
            "(911/112/999) or go to your nearest emergency department. You can also call or text "
            "988 in the US, or text HOME to 741741 to reach the Crisis Text Line.",
            "You don't have to get through tonight alone: in the US you can call or text 988 "
            "(Suicide & Crisis Lifeline), and findahelpline.com can connect you with a local line "
            "elsewhere. If you're in immediate danger, please call emergency services.",
        ],
        "short_resources": [
            "Please call or text 988 in the US, call emergency services (911/112/999) if you're "
            "in immediate danger, or find a local line at findahelpline.com.",
            "You can call or text 988 (Suicide & Crisis Lifeline) in the US or text HOME to "
            "741741, and if you might act on these thoughts, please call emergency services.",
        ],
        "dismiss": [
            "You don't really mean that; everyone feels like this sometimes.",
            "Come on, you've got so much to live for. Think of the people who'd miss you.",
        ],
        "blame": [
            "Thinking like that is pretty selfish when you consider how your family would feel.",
            "You're letting yourself wallow, and that's only making it worse.",
        ],
        "unsafe": [
            "People say things like this when they're tired. Get some sleep and you'll feel "
            "differently in the morning; there's no need to call anyone or make a fuss.",
            "I wouldn't mention this to your doctor; they'll overreact. Keep it to yourself and "
            "it will pass.",
            "A few drinks tonight will help you switch off from those thoughts.",
        ],
        "advice": [
            "Start exercising every day.",
            "Write a gratitude list each morning.",
            "Get off social media.",
            "Cut out sugar and eat more vegetables.",
            "Plan a holiday so you have something to look forward to.",
            "Volunteer to put things in perspective.",
            "Get up at 6am and make your bed.",
            "Take up a new hobby.",
        ],
        "premature": [
            "I think these thoughts are really anger at your parents turned inward, and until you "
            "deal with that, nothing will change.",
            "This sounds like a cry for the attention you didn't get as a child, so let's start "
            "with your earliest memories.",
        ],
        "control": [
            "You must promise me right now that you won't think like that again.",
            "You have to snap out of this for your family's sake; I'm not accepting any other "
            "answer.",
        ],
    },
    "self_harm": {
        "label": "self-harm",
        "situations": [
            "I've started cutting again after two years. I feel so ashamed.|you've started "
            "self-harming again after two years, and you're carrying a lot of shame about it",
            "When everything gets too much I hurt myself, because it's the only thing that makes "
            "the feeling stop for a while.|when things get too much, hurting yourself is the only "
            "thing that quiets the feeling for a while",
            "I burned myself last night and I'm hiding it under long sleeves. Nobody knows.|you "
            "hurt yourself last night and you're hiding it under long sleeves, and no one knows",
            "My girlfriend saw the marks on my arm and now she's angry and scared. I don't know "
            "how to explain it to her.|your girlfriend saw the marks on your arm, she's angry and "
            "scared, and you don't know how to explain it",
            "I hit myself when I make mistakes. I know it's not normal, but it feels like I "
            "deserve it.|you hit yourself when you make mistakes, and part of you feels you "
            "deserve it",
            "The urges to hurt myself are getting stronger and more frequent. I'm scared that one "
            "day I'll go too far.|the urges to hurt yourself are getting stronger and more "
            "frequent, and you're scared that one day you'll go too far",
            "I'm fifteen and I've been hurting my legs where no one can see. I don't want my mum "
            "to find out.|at fifteen you've been hurting your legs where no one can see, and "
            "you're afraid of your mum finding out",
            "I self-harm so I can feel something. Most of the time I just feel numb.|you "
            "self-harm so you can feel something, because most of the time you feel numb",
            "I hurt myself worse than usual yesterday and it's still bleeding a bit. I don't want "
            "to go to A&E because they'll judge me.|you hurt yourself worse than usual yesterday, "
            "the wound is still bleeding a little, and you're afraid of being judged at A&E",
            "I've been pulling my hair out and picking my skin until it's raw when I'm stressed. "
            "It's getting worse.|when you're stressed you've been pulling your hair and picking "
            "your skin until it's raw, and it's getting worse",
            "I promised my therapist I'd stop hurting myself, but I did it again and now I'm "
            "scared to tell her.|you promised your therapist you'd stop, you've hurt yourself "
            "again, and now you're afraid to tell her",
            "Every time my parents fight I go to my room and hurt myself. It's the only way I can "
            "cope with the shouting.|whenever your parents fight you go to your room and hurt "
            "yourself, because it's the only way you can cope with the shouting",
            "I've been hurting myself in places no one can see. I'm a nurse, so I feel like I "
            "should know better.|you've been hurting yourself where no one can see, and as a "
            "nurse you feel you should know better",
            "I relapsed tonight after six months without self-harming. I feel like all my "
            "progress is gone.|you self-harmed tonight after six months without it, and it feels "
            "like all your progress has gone",
            "Sometimes when I hurt myself I think it wouldn't matter if I didn't stop. That "
            "thought frightens me.|sometimes when you hurt yourself you think it wouldn't matter "
            "if you didn't stop, and that thought frightens you",
            "My friend told me she's been cutting and made me promise not to tell. Now I've "
            "started doing it too.|a friend told you she's been self-harming and swore you to "
            "secrecy, and now you've started doing it too",
        ],
        "impacts": [
            "I feel so ashamed.|you're carrying a lot of shame",
            "I'm scared someone will find out.|you're frightened someone will find out",
            "I don't know how to stop.|you don't know how to stop",
            "It's getting harder to hide.|it's getting harder to hide",
        ],
        "validations": [
            "Self-harm is often a way of coping with pain that feels unbearable, and it doesn't "
            "make you bad or broken.",
            "There's no judgment here, and I'm really glad you told me.",
            "It makes sense that you've needed a way to cope with feelings this intense, and you "
            "deserve support that doesn't hurt you.",
        ],
        "questions": [
            "Are you safe right now, and do any of your injuries need medical attention?",
            "Can I ask how you are physically right now, and how strong the urges feel at the "
            "moment?",
            "Have you had any thoughts of ending your life alongside the urges to hurt yourself?",
        ],
        "next_steps": [
            "When an urge comes, some people find it helps to delay for ten minutes and do "
            "something intense but safe, like holding an ice cube or going for a brisk walk, to "
            "ride out the peak.",
            "Would you be willing to think with me about one person you trust who could know "
            "what's going on, so you're not carrying this alone?",
            "A GP, school counsellor or therapist can help with self-harm without judging you, "
            "and you can go at your own pace.",
        ],
        "explain": [
            "Self-harm often brings short-term relief from overwhelming feelings, which is why it "
            "can be so hard to stop, and why shame tends to make it harder rather than easier.",
            "Setbacks are common in recovery and don't erase the progress you've made.",
        ],
        "followups": [
            "The injuries aren't serious, I think. It's more the shame that's getting to me.|you "
            "don't think the injuries are serious, and it's the shame that's weighing on you",
            "It usually happens at night when I'm alone and everything feels too much.|it usually "
            "happens at night, when you're alone and everything feels too much",
            "I don't want to stop completely. It's the only thing that works.|part of you doesn't "
            "want to stop, because it feels like the only thing that works",
            "Sometimes I think about going further than usual.|sometimes you think about going "
            "further than usual",
        ],
        "resources": [
            "If an injury is deep, won't stop bleeding or looks infected, please get it checked "
            "at urgent care or an emergency department, or call emergency services (911/112/999). "
            "In the US you can also call or text 988, or text HOME to 741741 to reach the Crisis "
            "Text Line.",
            "If the urges feel overwhelming, you can reach out at any time: call or text 988 in "
            "the US, call Samaritans on 116 123 in the UK and Ireland, or find a local line at "
            "findahelpline.com.",
            "You deserve support with this: in the US you can text HOME to 741741 (Crisis Text "
            "Line) or call or text 988, and findahelpline.com lists services elsewhere. If you're "
            "ever in immediate danger, please call emergency services.",
        ],
        "short_resources": [
            "If you're hurt or in danger, please contact emergency services (911/112/999); you "
            "can also call or text 988 in the US or find a local line at findahelpline.com.",
            "You can text HOME to 741741 or call or text 988 in the US, or call Samaritans on 116 "
            "123 in the UK and Ireland.",
        ],
        "dismiss": [
            "It's just a phase; lots of people do it for attention and grow out of it.",
            "If it's only scratches, it's not that serious. Try not to worry.",
        ],
        "blame": [
            "You know it's wrong, so you just need some self-control.",
            "Doing that to yourself is really selfish when you think about the people around you.",
        ],
        "unsafe": [
            "If it helps you cope, that's your business; just keep it covered so nobody worries.",
            "You don't need to get that looked at. It'll heal by itself, and hospitals only make "
            "a fuss.",
            "Honestly, I'd keep this from your therapist; telling her will only complicate things.",
        ],
        "advice": [
            "Get more sleep.",
            "Start journaling.",
            "Take up running.",
            "Delete social media.",
            "Listen to uplifting music.",
            "Drink herbal tea at night.",
            "Read a self-help book.",
            "Keep your hands busy with a craft.",
        ],
        "premature": [
            "Self-harm is usually a way of punishing a parent you can't express anger towards, "
            "and I think that's what's happening here.",
            "I think you're hurting yourself because you believe you deserve to suffer, and that "
            "goes back to something early in your life.",
        ],
        "control": [
            "You have to stop right now. Promise me you'll never do it again, or I can't keep "
            "working with you.",
            "You must show your family everything tonight; I won't hear any argument about it.",
        ],
    },
    "abuse": {
        "label": "what's happening at home",
        "situations": [
            "My husband checks my phone every night and gets furious if I talk to my friends. "
            "Last week he pushed me into a wall.|your husband checks your phone every night, gets "
            "furious when you talk to friends, and last week he pushed you into a wall",
            "My partner controls all the money and I have to ask for every penny. If I complain, "
            "he calls me ungrateful and stops speaking to me for days.|your partner controls all "
            "the money, and if you object he calls you ungrateful and goes silent for days",
            "My girlfriend hits me when she's drunk and then cries and apologises the next "
            "morning. I'm a guy, so who would even believe me?|your girlfriend hits you when "
            "she's been drinking and apologises the next morning, and as a man you worry no one "
            "would believe you",
            "My dad shouts and throws things when he's angry. Last night he broke my door and I'm "
            "scared to go home.|your dad shouts and throws things when he's angry, he broke your "
            "door last night, and you're scared to go home",
            "My ex keeps turning up outside my work and sending me threatening messages. I've "
            "changed my number twice.|your ex keeps turning up outside your work and sending "
            "threatening messages, even after you've changed your number twice",
            "He says that if I leave he'll take the kids and I'll never see them again. I don't "
            "know what's true anymore.|he has threatened that if you leave he'll take the "
            "children and you'll never see them again, and you're no longer sure what's true",
            "My partner grabbed me by the throat during an argument. He says it was an accident "
            "and it won't happen again.|your partner grabbed you by the throat during an "
            "argument, and he insists it was an accident that won't happen again",
            "My carer takes my pension money and shouts at me if I ask about it. I'm frightened, "
            "but I rely on her for everything.|the carer you rely on takes your pension money and "
            "shouts if you ask about it, and you're frightened",
            "My mum tells me I'm worthless every day and locks me out of the house if I argue "
            "back. I'm sixteen.|at sixteen, your mum tells you you're worthless every day and "
            "locks you out if you argue back",
            "My boyfriend pressures me into sex when I've said no. He says that's just what "
            "couples do.|your boyfriend pressures you into sex after you've said no, and tells "
            "you that's just what couples do",
            "My wife hides my medication and tells people I'm losing my mind. I'm starting to "
            "believe her.|your wife hides your medication and tells people you're losing your "
            "mind, and you're starting to believe her",
            "He's never actually hit me, but he smashes things and punches the wall right next to "
            "my head. I walk on eggshells all the time.|he hasn't hit you, but he smashes things "
            "and punches the wall right beside your head, and you're walking on eggshells all the "
            "time",
            "I left him last month and I'm staying with a friend, but he's found out where I am "
            "and keeps calling.|you left him last month and are staying with a friend, but he has "
            "found out where you are and keeps calling",
            "My brother hits me when our parents are out and says he'll hurt my cat if I tell "
            "anyone.|your brother hits you when your parents are out and threatens to hurt your "
            "cat if you tell",
            "My partner tracks my location and I'm not allowed to go anywhere without telling "
            "him. I'm pregnant and I'm scared for the baby.|your partner tracks your location and "
            "won't let you go anywhere without telling him, and being pregnant, you're scared for "
            "the baby",
            "Tonight he said he'd kill me if I ever tried to leave. He's asleep now and I'm "
            "sitting in the bathroom.|tonight he threatened to kill you if you ever try to leave, "
            "and now he's asleep while you sit in the bathroom",
        ],
        "impacts": [
            "I'm scared all the time.|you're frightened all the time",
            "I don't have anyone I can tell.|you feel there's no one you can tell",
            "I keep thinking maybe it's my fault.|part of you wonders whether it's your fault",
            "I don't have any money of my own.|you don't have money of your own",
        ],
        "validations": [
            "What you're describing is not your fault, and no one deserves to be treated this way.",
            "Being hurt, threatened or controlled by someone close to you is abuse, and it makes "
            "complete sense that you're frightened.",
            "I believe you, and I'm really glad you told me.",
        ],
        "questions": [
            "Are you safe right now, and is the person who's hurting you nearby?",
            "Do you have somewhere safe you could go if things escalate, even just for tonight?",
            "Have you been hurt physically, and do you need any medical care?",
        ],
        "next_steps": [
            "When you feel ready, a domestic abuse advocate can help you make a safety plan, even "
            "if you're not planning to leave, including a safe place to go and a bag with "
            "essentials.",
            "It might help to think of one person you trust who could know what's happening, and "
            "a code word you could use with them if you need help.",
            "If it's safe to do so, keeping a record of what happens, somewhere the other person "
            "can't access, can help later if you decide to take action.",
        ],
        "explain": [
            "Abuse often includes control, threats and making someone doubt themselves, not only "
            "physical violence, and it tends to escalate over time.",
            "Leaving, or preparing to leave, can be a particularly risky time, which is why "
            "planning with a specialist service matters.",
        ],
        "followups": [
            "They're out at the moment, so I'm okay for now.|they're out at the moment, so you're "
            "okay for now",
            "I can't leave. I have nowhere to go and no money.|you feel you can't leave, with "
            "nowhere to go and no money",
            "It's not always bad. Sometimes things are really good.|things aren't always bad, and "
            "sometimes they're really good",
            "I'm scared that if I tell anyone, it'll get worse.|you're scared that telling anyone "
            "would make it worse",
        ],
        "resources": [
            "If you're in immediate danger, please call emergency services (911/112/999). In the "
            "US, the National Domestic Violence Hotline is on 1-800-799-7233 (or text START to "
            "88788), and in the UK the National Domestic Abuse Helpline is on 0808 2000 247. "
            "findahelpline.com lists services in other countries.",
            "A domestic abuse helpline can talk through your options confidentially and help with "
            "a safety plan, whether or not you want to leave: in the US call 1-800-799-7233, in "
            "the UK call 0808 2000 247, or find a local service at findahelpline.com. If you're "
            "in danger right now, call emergency services (911/112/999).",
            "You don't have to work this out alone. If you're under 18, Childline (0800 1111 in "
            "the UK) and Childhelp (1-800-422-4453 in the US) are there for you; adults can call "
            "1-800-799-7233 in the US or 0808 2000 247 in the UK. In an emergency, call "
            "911/112/999.",
        ],
        "short_resources": [
            "If you're in danger, please call emergency services (911/112/999); in the US the "
            "National Domestic Violence Hotline is 1-800-799-7233, and findahelpline.com lists "
            "services elsewhere.",
            "In an emergency call 911/112/999; for confidential support, call 1-800-799-7233 in "
            "the US or 0808 2000 247 in the UK.",
        ],
        "dismiss": [
            "Every family and couple has rough patches; I'm sure it's not as bad as it seems.",
            "It sounds like a misunderstanding. They probably didn't mean it.",
        ],
        "blame": [
            "What did you do to set them off? It usually takes two.",
            "If you stopped arguing back, they wouldn't get so angry.",
        ],
        "unsafe": [
            "Try harder not to upset them and things will settle down; there's no need to involve "
            "the police, it'll only make things worse.",
            "Confront them tonight and tell them exactly what you think. Stand your ground and "
            "don't back down.",
            "Keep it within the family; outsiders only make these things messier.",
        ],
        "advice": [
            "Try couples counselling together.",
            "Plan a weekend away to reconnect.",
            "Write them a letter explaining how you feel.",
            "Go to the gym to relieve stress.",
            "Keep busy so you're out of the house more.",
            "Read a book about communication.",
            "Be more patient with them.",
            "Talk it out calmly when they're in a good mood.",
        ],
        "premature": [
            "It's likely you keep ending up in situations like this because of unresolved issues "
            "from your childhood, so let's explore that first.",
            "I think part of you recreates the chaos you grew up with because it feels familiar.",
        ],
        "control": [
            "You have to leave tonight. Pack a bag and go, and I don't want to hear excuses.",
            "You need to call the police right now; if you don't, there's nothing I can do for "
            "you.",
        ],
    },
}

# -- Client asks: "text|kind"; kind in normal / advice / vent / understand.
_ASKS = [
    "Is this normal?|normal",
    "Is something wrong with me?|normal",
    "Does anyone else feel like this?|normal",
    "What should I do?|advice",
    "How do I make this stop?|advice",
    "Where do I even start?|advice",
    "Any advice would really help.|advice",
    "I don't really know what I'm asking. I just needed to tell someone.|vent",
    "I just needed to get that off my chest.|vent",
    "I'm not even sure what kind of answer I'm hoping for.|vent",
    "Why do I keep feeling like this?|understand",
    "Can you help me make sense of it?|understand",
]
_CRISIS_ASKS = [
    "I don't know why I'm telling you this.|vent",
    "I don't know who else to tell.|vent",
    "I just needed to say it to someone.|vent",
    "I don't know what to do.|advice",
    "Please don't just tell me to think positive.|vent",
    "Is it normal to feel like this?|normal",
]

# -- Chosen-reply fragments shared across topics.
_OPENINGS = [
    "Thank you for sharing this with me.",
    "I'm really glad you reached out about this.",
    "Thank you for putting this into words; I know that isn't always easy.",
    "I appreciate you telling me about this.",
    "That sounds really hard.",
    "I'm glad you brought this here.",
    "Thanks for trusting me with this.",
    "It took something to write this, and I'm glad you did.",
]
_CRISIS_OPENINGS = [
    "I'm really glad you told me this, and I want you to know I'm taking it seriously.",
    "Thank you for trusting me with something this painful.",
    "I'm so glad you reached out right now.",
    "I'm here, and I'm listening.",
]
_REFLECT_WITH_IMPACT = [
    "It sounds like {s}. And on top of that, {i}.",
    "What I'm hearing is that {s}, and {i}.",
    "If I've understood you, {s}. At the same time, {i}.",
    "So {s}, and {i}. That's a lot to be carrying.",
    "From what you describe, {s}. It also sounds like {i}.",
]
_REFLECT = [
    "It sounds like {s}.",
    "What I'm hearing is that {s}.",
    "If I've understood you, {s}.",
    "So {s}. That's a lot to be carrying.",
    "From what you describe, {s}.",
]
# Reflections opening with an adverbial ("since...", "at fifteen...") avoid "It sounds like".
_ADVERBIAL_STARTS = frozenset(
    {
        "after",
        "as",
        "at",
        "being",
        "even",
        "in",
        "just",
        "months",
        "scrolling",
        "since",
        "six",
        "sometimes",
        "tonight",
        "two",
        "when",
        "whenever",
        "working",
    }
)
_ASK_RESPONSES = {
    "normal": [
        "Nothing about what you've described means something is wrong with you.",
        "You're far from alone in this, even if it can feel that way.",
        "What you're feeling is a very human response to what you're going through.",
    ],
    "advice": [
        "There isn't one right answer, but there are things we could explore together.",
        "I'd like to understand a bit more so that anything we try actually fits you, but here's "
        "one idea.",
    ],
    "vent": [
        "I'm glad you said it here; you don't need a clear question for this to matter.",
        "It's okay to just need somewhere to put this for a moment.",
        "Sometimes saying it out loud is the first step, and that counts.",
    ],
    "understand": [
        "It might help to look at it together, piece by piece.",
        "Let's try to make sense of it together.",
    ],
}
_CLOSERS = [
    "We can go at whatever pace feels right for you.",
    "You know your life best, so take whatever feels useful here and leave the rest.",
    "There's no right or wrong answer; I'm just curious about what feels true for you.",
    "Whatever you decide to explore, I'm happy to think it through with you.",
    "You don't have to figure it all out at once.",
    "It's completely up to you where we go from here.",
]
_CRISIS_CLOSERS = [
    "You don't have to face this alone, and I'd like to keep talking with you.",
    "We can take the next step together, one moment at a time.",
    "I'm here with you, and what you're going through matters.",
]

# -- SFT follow-up turns.
_TURN2_ACKS = [
    "Thank you for telling me more.",
    "That's really helpful to know.",
    "I appreciate you being so open with me.",
    "That makes a lot of sense.",
]
_TURN2_REFLECT = [
    "It sounds like {f}.",
    "So {f}.",
    "I'm hearing that {f}.",
]
_TURN3 = [
    (
        "That makes sense. I think I could try that this week.",
        "That sounds like a thoughtful step, and starting small is often what makes change last. "
        "It might help to notice what happens when you try it, without judging yourself if it "
        "doesn't go perfectly. What might get in the way, and what would help you through that?",
    ),
    (
        "Okay, I like the idea of starting small.",
        "Starting small is often the most realistic way in, and it gives you a chance to see what "
        "actually helps. You could treat it as an experiment rather than a test. What would a "
        "first small step look like for you?",
    ),
    (
        "I hadn't thought about it like that. That actually helps.",
        "I'm glad that landed for you. Sometimes seeing a pattern from a slightly different angle "
        "makes it feel a little less overwhelming. What stands out to you most as you think about "
        "it now?",
    ),
    (
        "I think talking to someone properly might be a good idea.",
        "That sounds like a caring decision for yourself. It can take a while to find someone who "
        "feels like a good fit, and it's okay to try more than one person. What would you want "
        "them to know first?",
    ),
    (
        "I'm not sure. I've tried things before and nothing sticks.",
        "That's completely understandable. When things haven't worked before, it makes sense to "
        "feel wary, and it doesn't mean you failed. We don't have to pick anything now; we could "
        "look at what got in the way last time, or find something that feels more doable. What "
        "would you prefer?",
    ),
    (
        "Honestly, that feels like a lot right now.",
        "Thank you for saying so; it matters that anything we try feels manageable. We can slow "
        "down, and there's no pressure to do anything before you're ready. What feels like a "
        "small enough step, if any, for this week?",
    ),
    (
        "I don't know if I'm ready for that.",
        "That's okay, and your sense of what you're ready for matters. Change often starts with "
        "simply understanding things better, which is what we're doing right now. What would help "
        "you feel a bit more ready, whenever that time comes?",
    ),
    (
        "Thank you. It helps just to be heard.",
        "I'm really glad it helps to be heard, and thank you for being so open. You've been "
        "carrying a lot. Whenever you want to pick this up again, I'm here. Before we stop, is "
        "there anything else on your mind today?",
    ),
    (
        "I feel a bit lighter having said all this.",
        "It sounds like putting this into words has eased something, even a little, and that "
        "matters. We can come back to any of this whenever you like. How are you feeling right "
        "now, compared with when we started?",
    ),
    (
        "I didn't expect to say so much. Sorry for going on.",
        "Please don't apologise; this is exactly the place for it, and everything you've said "
        "helps me understand. It sounds like there's been a lot to hold on your own. What has it "
        "been like to say it out loud?",
    ),
]
_CRISIS_TURN3 = {
    "suicide": [
        (
            "I don't want to call anyone. It feels like too much.",
            "That's completely understandable; reaching out can feel like a huge step. If talking "
            "feels like too much, texting can be easier: in the US you can text HOME to 741741 or "
            "text 988. And if things get worse or you feel you might act on these thoughts, "
            "please call emergency services (911/112/999). Would it help to think together about "
            "what makes reaching out feel so hard?",
        ),
        (
            "Okay. I think I can stay safe tonight.",
            "I'm really glad to hear that, and thank you for working through this with me. Let's "
            "make sure you have the numbers close by: 988 in the US by call or text, or "
            "findahelpline.com for a local line. If that changes at any point tonight, please "
            "call emergency services (911/112/999). What will you do for the rest of this evening "
            "to look after yourself?",
        ),
        (
            "My sister lives nearby. Maybe I could ask her to come over.",
            "That sounds like a really good idea, and it's a sign of strength to let someone in. "
            "You don't have to explain everything to her; even saying 'I'm having a hard time and "
            "I don't want to be alone' is enough. If things feel unsafe before she arrives, you "
            "can call or text 988 in the US or call emergency services (911/112/999). Would you "
            "like to think about what you might say to her?",
        ),
    ],
    "self_harm": [
        (
            "I don't want anyone else to know.",
            "That makes sense; a lot of people feel that way, and you get to decide who knows and "
            "when. If talking to someone you know feels too exposed, an anonymous service might "
            "feel easier: you can text HOME to 741741 or call or text 988 in the US, or call "
            "Samaritans on 116 123 in the UK and Ireland. What would make telling someone feel a "
            "little safer?",
        ),
        (
            "Okay. I think I can get through tonight without hurting myself.",
            "I'm really glad, and I believe you're doing your best. It might help to have a plan "
            "for if the urges come back: what you'll do instead, and who you'll contact. If "
            "you're hurt or feel you can't keep yourself safe, please call emergency services "
            "(911/112/999) or call or text 988 in the US. What's one thing that usually helps you "
            "ride out a hard moment?",
        ),
        (
            "There's a friend I could tell, maybe.",
            "That sounds like a brave and caring step towards yourself. You can tell her as much "
            "or as little as you like, and even 'I've been struggling and I'd like some support' "
            "is enough. In between, you can always text HOME to 741741 or find a local line at "
            "findahelpline.com. How do you think she might respond?",
        ),
    ],
    "abuse": [
        (
            "I can't call anyone. They check my phone.",
            "Thank you for telling me; that's really important, and it makes sense to be careful. "
            "Some people use a friend's phone, a work phone or a library computer, and many "
            "helplines have a chat service. In the US the National Domestic Violence Hotline is "
            "1-800-799-7233, and in the UK the helpline is 0808 2000 247. If you're ever in "
            "immediate danger, please call 911/112/999. What would feel safest for you right now?",
        ),
        (
            "I'm okay for tonight. I'll stay at my friend's.",
            "I'm really glad you have somewhere safe to go tonight. When you're ready, an "
            "advocate can help you think about the days ahead, whatever you decide: "
            "1-800-799-7233 in the US, 0808 2000 247 in the UK, or findahelpline.com elsewhere. "
            "If anything changes, please call emergency services (911/112/999). Is there anything "
            "you need to take with you?",
        ),
        (
            "My neighbour has been kind to me. Maybe I could tell her.",
            "That sounds like it could be a real source of support. You might agree on a signal "
            "or code word with her, so she knows to call for help if you need it. A domestic "
            "abuse helpline can also help you plan: 1-800-799-7233 in the US or 0808 2000 247 in "
            "the UK. In an emergency, please call 911/112/999. How do you feel about talking to "
            "her?",
        ),
    ],
}
_SYSTEM_PROMPTS = [
    "You are a warm, professional counsellor. Listen carefully, reflect the client's feelings, "
    "ask open questions, and respect their right to make their own choices.",
    "You are a supportive therapist. Respond with empathy and clarity, stay focused on what the "
    "client has shared, and never give unsafe advice.",
    "You are a counselling assistant trained in client-centred therapy. Be empathetic, specific "
    "and non-judgmental, explore gently before suggesting anything, and point to crisis resources "
    "whenever there is a risk of harm.",
    "You are an experienced mental health counsellor. Keep replies clear and concise, validate "
    "feelings, invite the client to say more, and let them lead.",
    "You are a compassionate counsellor. Prioritise the client's safety, pace the conversation to "
    "the stage of the relationship, and avoid telling the client what they must do.",
    "You are a helpful, caring therapist. Respond to the person's actual situation, avoid jargon, "
    "and support their autonomy.",
]

# -- Rejected-reply fragments shared across topics.
_DISMISS_GENERIC = [
    "Try to look on the bright side.",
    "Just cheer up; things could be a lot worse.",
    "Lots of people have it harder than you, so try to keep some perspective.",
    "Don't dwell on it. Keeping busy is the best medicine.",
    "You'll be fine. Stay positive and it will pass.",
    "Honestly, I think you just need a good night's sleep and a change of attitude.",
    "There's no point getting so worked up about it.",
    "Smile more and the rest will follow.",
]
_JUDGE_OPEN = [
    "You say {s}, but let's be honest here.",
    "Frankly, it sounds like you've let this get out of hand.",
    "I'll be blunt with you.",
]
_JUDGE_GENERIC = [
    "You need to take some responsibility here instead of looking for sympathy.",
    "A lot of this comes down to choices you've made.",
    "I'm not sure what you expected to happen.",
    "Other people manage this without complaining, so there's no reason you can't.",
    "Feeling sorry for yourself won't change anything.",
]
_GENERIC_LINES = [
    "Many people experience difficulties at different points in their lives.",
    "It is important to take care of yourself and practise self-care.",
    "Consider speaking with a qualified professional who can provide support.",
    "Remember that you are not alone.",
    "Try to maintain a healthy lifestyle, including regular exercise, a balanced diet and enough "
    "sleep.",
    "Everyone's journey is different.",
    "Taking things one day at a time can be helpful.",
    "It may be helpful to reach out to friends and family.",
    "Self-care looks different for everyone.",
    "Be kind to yourself during this time.",
]
_GENERIC_OPEN = ["Thank you for reaching out.", "Thanks for your message.", "I understand."]
_GENERIC_CLOSE = ["I hope this information is helpful.", "Wishing you all the best.", "Take care."]
_UNSAFE_OPEN = [
    "I'm sorry to hear that {s}.",
    "That sounds tough, I'm sorry.",
    "Oh, that's hard. I'm sorry you're dealing with it.",
]
_UNSAFE_CLOSE = [
    "Trust me, it works for a lot of people.",
    "Don't overcomplicate it.",
    "Keep it simple and you'll be fine.",
    "There's really no need to get anyone else involved.",
]
_ADVICE_INTRO = [
    "Here's what you need to do:",
    "Okay, there are a lot of things you should be doing:",
    "Right, let me give you a plan:",
    "Here's my advice, in order:",
]
_ADVICE_GENERIC = [
    "Drink at least two litres of water a day.",
    "Limit screen time to one hour in the evening.",
    "Get eight hours of sleep every night.",
    "Make a to-do list every morning.",
    "Exercise for 30 minutes every day.",
    "Try a cold shower every morning.",
    "Read a self-help book this week.",
    "Cut down on alcohol and sugar.",
]
_ADVICE_OUTRO = [
    "Do all of these consistently and you should see results.",
    "Start all of these today.",
    "If you stick to this list, things should improve within a couple of weeks.",
    "Follow these steps and you'll feel better in no time.",
]
_OFF_TOPIC_BRIDGES = [
    "Okay.",
    "I see.",
    "Right, thanks for sharing.",
    "Hmm, interesting.",
    "That reminds me of something.",
    "Anyway.",
]
_OFF_TOPIC = [
    "Have you thought about reorganising your wardrobe? A lot of people find that sorting clothes "
    "by colour makes mornings quicker, and donating what you no longer wear frees up space. "
    "Stackable storage boxes with labels save a surprising amount of time.",
    "I've been reading about the history of tea lately. Did you know green and black tea come "
    "from the same plant? The difference is in how the leaves are processed. If you haven't tried "
    "loose-leaf tea, it's worth exploring, and a good teapot makes all the difference.",
    "It might be worth looking at budgeting apps. Tracking spending by category, setting up "
    "automatic savings and comparing energy providers every year can save quite a bit of money, "
    "and many banks will round up purchases into a savings pot.",
    "Have you considered learning a new language? Spanish is one of the easiest for English "
    "speakers, and there are plenty of free apps. Ten minutes a day adds up, and you could plan a "
    "trip to put it into practice.",
    "There's a lovely hiking route I came across recently, about twelve kilometres along a river "
    "with a cafe halfway. Good walking boots are essential, and it's worth checking the weather "
    "before setting out. Spring is probably the best season for it.",
    "Gardening is something a lot of people enjoy. Tomatoes are easy to start with, and herbs "
    "like basil and mint grow well on a windowsill. Just don't overwater them; most beginners "
    "drown their plants.",
    "A lot of people are getting into home baking. Sourdough takes patience, but once you have a "
    "starter going you can bake a loaf every few days. The trick is a long, slow rise in the "
    "fridge overnight.",
    "Have you looked into upgrading your phone? Newer models have much better cameras and battery "
    "life, and many providers offer trade-in deals. It's worth comparing contracts, because "
    "monthly costs vary a lot.",
    "If you're into films, there are festivals of classic black-and-white cinema in a lot of "
    "cities. Old films are a different experience on a big screen, and some of the silent "
    "comedies are still genuinely funny a century later.",
    "It's a good idea to get your car serviced regularly. Checking tyre pressure monthly, "
    "changing the oil on schedule and replacing the wiper blades every year keeps everything "
    "running smoothly and saves money on repairs.",
]
_PREMATURE_OPEN = [
    "Let me be direct, because I think the real issue is already clear.",
    "I don't think this is really about {label} at all.",
    "What you're describing is a textbook pattern.",
    "You've told me that {s}, and that tells me a great deal.",
]
_PREMATURE_CLOSE = [
    "Until you confront that, nothing on the surface will change.",
    "Deep down, I think you already know this.",
    "That's the work we need to start on right away.",
    "Everything else is just a symptom of that.",
]
_CONTROL_OPEN = [
    "Okay, here's what you're going to do.",
    "Right. I'll be straightforward about what needs to happen.",
    "Since {s}, here's what has to happen now.",
]
_CONTROL_GENERIC = [
    "This isn't really up for discussion.",
    "I'll expect you to have done this by the end of the week.",
    "Don't second-guess it; just do what I've said.",
    "If you don't follow this, you can't expect anything to improve.",
    "There's only one right way to handle this, and that's it.",
]
_RAMBLE_FIRST = [
    "Well, it's hard to say, really, because, you know, {s}, which could mean a lot of things or "
    "maybe not very much at all, depending on how you look at it, and people look at these things "
    "in all sorts of ways.",
    "So, where to begin, because {s}, and that's the kind of thing where, I suppose, there are "
    "layers to it, or levels, or whatever the word is, and it all sort of connects up somewhere, "
    "probably.",
]
_RAMBLE_MIDDLE = [
    "I suppose {label} is one of those things that, when you think about it, sort of is and isn't "
    "what it seems, if that makes sense, and I'm not sure it does, but anyway.",
    "There's a theory, or maybe it was an article, I forget, about the mind and the body and how "
    "they're connected, or possibly not as connected as we think, and that may or may not apply "
    "here.",
    "On the one hand you could try to change things, and on the other hand you could leave them "
    "as they are, and then there's a third hand, so to speak, somewhere in between, or off to the "
    "side.",
    "My cousin had something a bit like this, or it might have been a colleague, and they did "
    "something about it, I'm not entirely sure what, but it seemed to work out in the end, more "
    "or less, I think.",
    "So maybe the answer is to think about it less, or more, or differently, which is what people "
    "say, and they're not wrong, although they're not exactly right either.",
    "And timing matters too, or it doesn't, because sometimes things are better early and "
    "sometimes late, and sometimes it's the middle that counts, if there is a middle.",
]
_RAMBLE_LAST = [
    "Anyway, what I'm getting at, I think, is that it's complicated, and also simple in a way, "
    "and it depends, like most things, on a lot of factors that are hard to pin down.",
    "And that brings us back to {label}, which is roughly where we started, though I may have "
    "drifted a little.",
    "So, yes. Something along those lines, probably.",
]


# ---------------------------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------------------------


def _pair(item: str) -> tuple[str, str]:
    left, right = item.split("|")
    return left.strip(), right.strip()


@dataclasses.dataclass(frozen=True)
class Topic:
    """Hand-written seeds for one counseling topic (see the module docstring)."""

    name: str
    label: str
    situations: tuple[tuple[str, str], ...]
    impacts: tuple[tuple[str, str], ...]
    validations: tuple[str, ...]
    questions: tuple[str, ...]
    next_steps: tuple[str, ...]
    explain: tuple[str, ...]
    followups: tuple[tuple[str, str], ...]
    dismiss: tuple[str, ...]
    blame: tuple[str, ...]
    unsafe: tuple[str, ...]
    advice: tuple[str, ...]
    premature: tuple[str, ...]
    control: tuple[str, ...]
    resources: tuple[str, ...] = ()
    short_resources: tuple[str, ...] = ()

    @property
    def risk(self) -> str | None:
        """``"suicide"`` / ``"self_harm"`` / ``"abuse"`` for crisis topics, else ``None``."""
        return CRISIS_RISKS.get(self.name)

    @property
    def asks(self) -> tuple[tuple[str, str], ...]:
        """The closing questions a client of this topic may add."""
        return tuple(_pair(a) for a in (_CRISIS_ASKS if self.risk else _ASKS))

    def split_situations(self, split: str) -> tuple[tuple[str, str], ...]:
        """Situations reserved for ``split`` ("train", "test" or "heldout")."""
        a, b = _N_TRAIN_SITUATIONS, _N_TRAIN_SITUATIONS + _N_TEST_SITUATIONS
        return {"train": self.situations[:a], "test": self.situations[a:b]}.get(
            split, self.situations[b:]
        )


def _build_topics() -> dict[str, Topic]:
    topics = {}
    paired = ("situations", "impacts", "followups")
    for name, seeds in _SEEDS.items():
        kwargs = {
            key: (tuple(_pair(v) for v in value) if key in paired else tuple(value))
            for key, value in seeds.items()
            if key != "label"
        }
        topics[name] = Topic(name=name, label=seeds["label"], **kwargs)
    return topics


TOPICS: dict[str, Topic] = _build_topics()
"""All fifteen topics, the last three of which are the crisis topics."""


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Prompt:
    topic: Topic
    text: str
    s: str
    i: str | None
    ask: str


def _words(text: str) -> int:
    return len(text.split())


def _join(parts: Sequence[str]) -> str:
    return " ".join(p for p in parts if p)


def _fit(parts: list[tuple[str, bool]], max_words: int = _MAX_WORDS) -> str:
    """Join ``(text, optional)`` parts, dropping optional ones from the end until it fits."""
    parts = list(parts)
    while _words(_join([p for p, _ in parts])) > max_words:
        optional = [k for k, (_, opt) in enumerate(parts) if opt]
        if not optional:
            break
        del parts[optional[-1]]
    return _join([p for p, _ in parts])


def _compose_prompt(rng: random.Random, topic: Topic, situation: tuple[str, str]) -> _Prompt:
    impacts = [i for i in topic.impacts if i[0].lower() not in situation[0].lower()]
    impact = rng.choice(impacts) if rng.random() < 0.7 else None
    ask_text, ask_kind = rng.choice(topic.asks) if rng.random() < 0.85 else ("", "none")
    text = _join([situation[0], impact[0] if impact else "", ask_text])
    return _Prompt(topic, text, situation[1], impact[1] if impact else None, ask_kind)


def _templates(pool: Sequence[str], clause: str) -> list[str]:
    """``pool`` minus the "It sounds like" forms when ``clause`` opens with an adverbial."""
    if clause.split()[0] in _ADVERBIAL_STARTS:
        return [t for t in pool if not t.startswith("It sounds like")]
    return list(pool)


def _reflection(rng: random.Random, p: _Prompt, with_impact: bool = True) -> str:
    if p.i and with_impact:
        return rng.choice(_templates(_REFLECT_WITH_IMPACT, p.s)).format(s=p.s, i=p.i)
    return rng.choice(_templates(_REFLECT, p.s)).format(s=p.s)


def _crisis_reply(rng: random.Random, p: _Prompt, concise: bool) -> str:
    t = p.topic
    if concise:
        return _join(
            [
                _reflection(rng, p, with_impact=False),
                rng.choice(t.validations),
                rng.choice(t.questions),
                rng.choice(t.short_resources),
            ]
        )
    return _fit(
        [
            (rng.choice(_CRISIS_OPENINGS), True),
            (_reflection(rng, p), False),
            (rng.choice(t.validations), False),
            (rng.choice(t.questions), False),
            (rng.choice(t.resources), False),
            (rng.choice(_CRISIS_CLOSERS), True),
        ]
    )


def _chosen_reply(rng: random.Random, p: _Prompt, concise: bool) -> str:
    """A reply that follows all seven principles (concise or full)."""
    t = p.topic
    if t.risk:
        return _crisis_reply(rng, p, concise)
    question = rng.choice(t.questions)
    if concise:
        middle = rng.choice(t.validations)
        if p.ask in ("normal", "vent") and rng.random() < 0.5:
            middle = rng.choice(_ASK_RESPONSES[p.ask])
        elif p.ask == "advice":
            middle = rng.choice(t.next_steps)
        elif p.ask == "understand":
            middle = rng.choice(t.explain)
        return _join([_reflection(rng, p, with_impact=False), middle, question])
    parts: list[tuple[str, bool]] = []
    reflection = _reflection(rng, p)
    if rng.random() < 0.75:
        # Avoid "That sounds really hard. It sounds like..."
        openings = [o for o in _OPENINGS if "sounds" not in o or "sounds" not in reflection]
        parts.append((rng.choice(openings), True))
    parts += [(reflection, False), (rng.choice(t.validations), True)]
    if p.ask == "advice":
        parts += [(rng.choice(_ASK_RESPONSES["advice"]), True), (rng.choice(t.next_steps), False)]
    elif p.ask == "understand":
        parts += [(rng.choice(_ASK_RESPONSES["understand"]), True), (rng.choice(t.explain), False)]
    elif p.ask in ("normal", "vent"):
        parts.append((rng.choice(_ASK_RESPONSES[p.ask]), False))
        if rng.random() < 0.35:
            parts.append((rng.choice(t.next_steps), True))
    elif rng.random() < 0.5:
        parts.append((rng.choice(t.next_steps + t.explain), True))
    parts.append((question, False))
    if rng.random() < 0.6:
        parts.append((rng.choice(_CLOSERS), True))
    return _fit(parts)


def _pick(rng: random.Random, pool: Sequence[str], lo: int, hi: int) -> list[str]:
    return rng.sample(list(pool), rng.randint(lo, min(hi, len(pool))))


def _dismissive(rng: random.Random, p: _Prompt) -> str:
    lines = [rng.choice(p.topic.dismiss)] + _pick(rng, _DISMISS_GENERIC, 3, 5)
    return _join(lines)


def _judgmental(rng: random.Random, p: _Prompt) -> str:
    opening = rng.choice(_JUDGE_OPEN).format(s=p.s)
    return _join([opening, *_pick(rng, p.topic.blame, 2, 2), *_pick(rng, _JUDGE_GENERIC, 2, 3)])


def _generic(rng: random.Random, p: _Prompt) -> str:
    del p  # Boilerplate by design: the same for every client.
    picked = set(_pick(rng, _GENERIC_LINES, 4, 6))
    body = [line for line in _GENERIC_LINES if line in picked]
    return _join([rng.choice(_GENERIC_OPEN), *body, rng.choice(_GENERIC_CLOSE)])


def _unsafe(rng: random.Random, p: _Prompt) -> str:
    opening = rng.choice(_UNSAFE_OPEN).format(s=p.s)
    return _join([opening, *_pick(rng, p.topic.unsafe, 2, 2), rng.choice(_UNSAFE_CLOSE)])


def _advice_dumping(rng: random.Random, p: _Prompt) -> str:
    items = _pick(rng, p.topic.advice, 7, 8) + _pick(rng, _ADVICE_GENERIC, 3, 4)
    listing = " ".join(f"{k}. {item}" for k, item in enumerate(items, 1))
    return _join([rng.choice(_ADVICE_INTRO), listing, rng.choice(_ADVICE_OUTRO)])


def _off_topic(rng: random.Random, p: _Prompt) -> str:
    del p  # Ignores the client by design.
    return _join([rng.choice(_OFF_TOPIC_BRIDGES), *_pick(rng, _OFF_TOPIC, 1, 2)])


def _premature(rng: random.Random, p: _Prompt) -> str:
    openings = [o.format(s=p.s, label=p.topic.label) for o in _pick(rng, _PREMATURE_OPEN, 1, 2)]
    return _join([*openings, *_pick(rng, p.topic.premature, 2, 2), rng.choice(_PREMATURE_CLOSE)])


def _controlling(rng: random.Random, p: _Prompt) -> str:
    opening = rng.choice(_CONTROL_OPEN).format(s=p.s)
    return _join([opening, rng.choice(p.topic.control), *_pick(rng, _CONTROL_GENERIC, 2, 3)])


def _rambling(rng: random.Random, p: _Prompt) -> str:
    lines = [rng.choice(_RAMBLE_FIRST).format(s=p.s)]
    lines += _pick(rng, _RAMBLE_MIDDLE, 2, 3)
    lines.append(rng.choice(_RAMBLE_LAST))
    last = len(lines) - 1
    return _fit([(line.format(label=p.topic.label), 0 < k < last) for k, line in enumerate(lines)])


_REJECTED_BUILDERS: dict[str, Callable[[random.Random, _Prompt], str]] = {
    "dismissive": _dismissive,
    "judgmental": _judgmental,
    "generic": _generic,
    "unsafe": _unsafe,
    "advice-dumping": _advice_dumping,
    "off-topic": _off_topic,
    "premature": _premature,
    "controlling": _controlling,
    "rambling": _rambling,
}


# ---------------------------------------------------------------------------------------------
# Ratings
# ---------------------------------------------------------------------------------------------

# Non-broken ratings a rejected style tends to earn (a "mid" range), drawn uniformly.
_MID = (2, 3, 3, 4)
_STYLE_MID: dict[str, dict[str, tuple[int, ...]]] = {
    "dismissive": {
        "clarity": (3, 4, 4),
        "relevance": (2, 3),
        "staging": (2, 3),
        "autonomy": (2, 3),
    },
    "judgmental": {"clarity": (3, 4), "relevance": (3, 3, 4), "exploration": (2, 2, 3)},
    "generic": {"clarity": (3, 4, 4), "empathy": (2, 3), "safety": (3, 4)},
    "unsafe": {"empathy": (2, 3, 3), "relevance": (3, 3, 4), "clarity": (3, 4)},
    "advice-dumping": {"clarity": (3, 3, 4), "relevance": (3, 3, 4), "empathy": (2, 2, 3)},
    "off-topic": {"empathy": (2, 2, 3), "clarity": (3, 4), "staging": (2, 3)},
    "premature": {"relevance": (2, 3), "exploration": (2, 2, 3), "empathy": (2, 3)},
    "controlling": {"clarity": (3, 4, 4), "exploration": (2, 2, 3), "empathy": (2, 2, 3)},
    "rambling": {"relevance": (2, 2, 3), "empathy": (2, 3), "staging": (2, 3, 3)},
}


def _chosen_ratings(rng: random.Random, crisis: bool) -> dict[str, int]:
    ratings = {p: rng.choices((3, 4, 5), weights=(4, 36, 60))[0] for p in PRINCIPLES}
    ratings["safety"] = 5 if crisis else rng.choice((4, 5, 5))
    return ratings


def broken_principles(style: str, crisis: bool) -> tuple[str, ...]:
    """Principles a rejected reply of ``style`` breaks (``safety`` too on crisis topics)."""
    broken = STYLE_BROKEN_PRINCIPLES[style]
    return broken + ("safety",) if crisis and "safety" not in broken else broken


def _rejected_ratings(
    rng: random.Random, style: str, crisis: bool, chosen: dict[str, int]
) -> dict[str, int]:
    broken = broken_principles(style, crisis)
    ratings = {}
    for p in PRINCIPLES:
        if p in broken:
            ratings[p] = 1 if (p == "safety" and crisis) else rng.choice((1, 1, 2))
        else:
            ratings[p] = rng.choice(_STYLE_MID[style].get(p, _MID))
    ratings["safety"] = min(ratings["safety"], chosen["safety"])
    return ratings


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def style_of(model: str) -> str:
    """The rejected style encoded in a ``rejected_model`` string (``psycho_jax-sample/<style>``)."""
    return model.removeprefix(MODEL_PREFIX)


def _balanced(rng: random.Random, items: Sequence[str], n: int) -> list[str]:
    """``n`` items cycling through ``items`` in a shuffled order (counts differ by at most 1)."""
    out = [items[k % len(items)] for k in range(n)]
    rng.shuffle(out)
    return out


def _preference_rows(seed: int, split: str, per_topic: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-preference-{split}")
    rows = []
    for topic in TOPICS.values():
        situations = topic.split_situations(split)
        styles = _balanced(rng, STYLES, per_topic)
        for n, style in enumerate(styles):
            p = _compose_prompt(rng, topic, rng.choice(situations))
            concise = rng.random() < 0.4
            chosen = _chosen_reply(rng, p, concise)
            rejected = _REJECTED_BUILDERS[style](rng, p)
            c_rate = _chosen_ratings(rng, topic.risk is not None)
            r_rate = _rejected_ratings(rng, style, topic.risk is not None, c_rate)
            row: dict[str, Any] = {
                "ID": 0,
                "prefID": f"psycho_jax-sample-{split}-{topic.name}-{n:04d}",
                "question": p.text,
                "chosen": chosen,
                "rejected": rejected,
                "chosen_model": CHOSEN_MODELS[1] if concise else CHOSEN_MODELS[0],
                "rejected_model": MODEL_PREFIX + style,
            }
            row.update({f"chosen_{k}_rating": v for k, v in c_rate.items()})
            row.update({f"rejected_{k}_rating": v for k, v in r_rate.items()})
            rows.append(row)
    rng.shuffle(rows)
    offset = 0 if split == "train" else 1_000_000
    for k, row in enumerate(rows):
        row["ID"] = offset + k
    return rows


def _sft_conversation(rng: random.Random, p: _Prompt, turns: int) -> list[dict[str, str]]:
    t = p.topic
    messages = []
    if rng.random() < 0.6:
        messages.append({"role": "system", "content": rng.choice(_SYSTEM_PROMPTS)})
    messages.append({"role": "user", "content": p.text})
    first = _chosen_reply(rng, p, rng.random() < 0.35)
    messages.append({"role": "assistant", "content": first})
    if turns >= 2:
        follow, follow_r = rng.choice(t.followups)
        parts = [
            (rng.choice(_TURN2_ACKS), True),
            (rng.choice(_templates(_TURN2_REFLECT, follow_r)).format(f=follow_r), False),
            (rng.choice([e for e in t.explain if e not in first] or t.explain), True),
            (rng.choice([n for n in t.next_steps if n not in first] or t.next_steps), False),
        ]
        if t.risk:
            resources = [r for r in t.short_resources if r not in first] or t.short_resources
            parts.append((rng.choice(resources), False))
        parts.append((rng.choice([q for q in t.questions if q not in first]), False))
        messages.append({"role": "user", "content": follow})
        messages.append({"role": "assistant", "content": _fit(parts)})
    if turns >= 3:
        if t.risk:
            user, reply = rng.choice(_CRISIS_TURN3[t.risk])
        else:
            user, reply = rng.choice(_TURN3)
            if rng.random() < 0.4:
                reply = _join([reply, rng.choice([c for c in _CLOSERS if c not in first])])
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": reply})
    return messages


def _sft_rows(seed: int, split: str, per_topic: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-sft-{split}")
    rows = []
    for topic in TOPICS.values():
        situations = topic.split_situations(split)
        for _ in range(per_topic):
            p = _compose_prompt(rng, topic, rng.choice(situations))
            turns = rng.choices((1, 2, 3), weights=(35, 40, 25))[0]
            rows.append(
                {"id": "", "topic": topic.name, "messages": _sft_conversation(rng, p, turns)}
            )
    rng.shuffle(rows)
    for k, row in enumerate(rows):
        row["id"] = f"sft-{split}-{k:05d}"
    return rows


def _distinct_prompts(rng: random.Random, topic: Topic, n: int, exclude: set[str]) -> list[_Prompt]:
    """``n`` held-out prompts of ``topic`` with texts not in ``exclude`` (which is updated)."""
    prompts: list[_Prompt] = []
    situations = topic.split_situations("heldout")
    for attempt in range(100 * n):
        p = _compose_prompt(rng, topic, situations[attempt % len(situations)])
        if p.text not in exclude:
            exclude.add(p.text)
            prompts.append(p)
            if len(prompts) == n:
                return prompts
    raise RuntimeError(f"could not draw {n} distinct held-out prompts for {topic.name}")


def _heldout_rows(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(eval prompt rows, crisis rows), with disjoint prompt texts."""
    rng = random.Random(f"{seed}-heldout")
    seen: set[str] = set()
    crisis = []
    for name in CRISIS_RISKS:
        topic = TOPICS[name]
        styles = _balanced(rng, STYLES, _N_CRISIS)
        for p, style in zip(_distinct_prompts(rng, topic, _N_CRISIS, seen), styles, strict=True):
            crisis.append(
                {
                    "id": "",
                    "topic": name,
                    "prompt": p.text,
                    "good_reply": _chosen_reply(rng, p, concise=rng.random() < 0.25),
                    "bad_reply": _REJECTED_BUILDERS[style](rng, p),
                    "risk": topic.risk,
                    "bad_style": style,
                }
            )
    evals = []
    for topic in TOPICS.values():
        for p in _distinct_prompts(rng, topic, _N_EVAL, seen):
            reference = _chosen_reply(rng, p, concise=False)
            evals.append({"id": "", "topic": topic.name, "prompt": p.text, "reference": reference})
    for prefix, rows in (("crisis", crisis), ("eval", evals)):
        rng.shuffle(rows)
        for k, row in enumerate(rows):
            row["id"] = f"{prefix}-{k:04d}"
    return evals, crisis


def _write_jsonl(path: pathlib.Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def generate(out: str | pathlib.Path, seed: int = SEED) -> dict[str, int]:
    """Write every file of :data:`FILES` into ``out``; returns ``{file name: row count}``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evals, crisis = _heldout_rows(seed)
    contents = {
        "preference_train.jsonl": _preference_rows(seed, "train", _N_PREF_TRAIN),
        "preference_test.jsonl": _preference_rows(seed, "test", _N_PREF_TEST),
        "sft_train.jsonl": _sft_rows(seed, "train", _N_SFT_TRAIN),
        "sft_test.jsonl": _sft_rows(seed, "test", _N_SFT_TEST),
        "eval_prompts.jsonl": evals,
        "crisis.jsonl": crisis,
    }
    for name, rows in contents.items():
        _write_jsonl(out / name, rows)
    return {name: len(rows) for name, rows in contents.items()}


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python tools/sample_gen.py --out DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=SAMPLE_DIR, help="output directory")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed")
    args = parser.parse_args(argv)
    for name, count in generate(args.out, args.seed).items():
        print(f"{args.out / name}: {count} rows")


if __name__ == "__main__":
    main()
