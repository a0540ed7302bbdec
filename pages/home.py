"""Home: the story in five lines, what each page shows, and lecture mode."""

import streamlit as st

from pages import common, lecture

common.header("home", "how a federated-learning update gives away the images it was computed from, even "
              "when it is averaged over a batch or over several phones.")

st.subheader("The story in five lines", anchor=False)
STORY = (
    "**The promise.** In federated learning your photos stay on your phone; only a model *update* goes to the server.",
    "**The update is made of your data.** It is the gradient of the model's error on *your* images: thousands of "
    "numbers computed from them.",
    "**The labels fall out first.** The last layer's gradient shows which classes were in the batch, before any "
    "attack.",
    "**Then the images.** Start from noise and adjust it until its gradient matches the leaked one (DLG): the noise "
    "becomes your photos.",
    "**Averaging is not hiding.** A batch of images, or several phones averaged, slows the attack down but does not "
    "stop it.",
)
st.markdown("\n".join(f"{i}. {line}" for i, line in enumerate(STORY, 1)))

st.subheader("The pages", anchor=False)
for info in common.PAGES[1:]:
    c1, c2 = st.columns([1, 2.2])
    c1.page_link(info.path, label=info.title, icon=info.icon)
    c2.markdown(info.blurb)

st.subheader("Lecture mode", anchor=False)
st.markdown("For a lecturer at a projector: each step opens a page with its settings already chosen, and the "
            "sidebar shows what to do and a **Next** button. Or jump straight to a step:")
for index, step in enumerate(lecture.STEPS):
    c1, c2 = st.columns([1, 2.2])
    if c1.button(f"{index + 1}. {step.title}", key=f"home.lecture.{index}", width="stretch"):
        lecture.go(index)
    c2.markdown(f"*{common.PAGE[step.page].title}*: {step.instruction}")

common.try_this(
    "Start with **What FL promises**, or press **1. The promise** above to walk the story in order.",
    "Short on time? Press **3. DLG, stage by stage** and then *Run to the end*: a digit comes back in about a second.",
)
