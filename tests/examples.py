"""Hand-made records of each dataset, shared by the prompt and answer tests."""

from medadapt.data.records import Record

PUBMED = Record(
    id="pubmedqa-1", dataset="pubmedqa", question="Does drug X lower blood pressure?",
    context="We randomised 120 adults.\nSystolic pressure fell by 12 mmHg.\nNo harms were seen.",
    options=None, answer="yes", rationale="Drug X lowered systolic pressure by 12 mmHg.",
)
PUBMED_NO = Record(
    id="pubmedqa-2", dataset="pubmedqa", question="Is Y useful?", context="A trial of Y.\nY did nothing.",
    options=None, answer="no", rationale=None,
)
MCQA = Record(
    id="medmcqa-1", dataset="medmcqa", question="Main vector of Japanese encephalitis:", context=None,
    options=["Aedes mosquito", "Culex mosquito", "Anopheles mosquito", "Sandfly"], answer="B",
    rationale="Culex mosquitoes breed in rice fields.",
)
MCQA_2 = Record(
    id="medmcqa-2", dataset="medmcqa", question="Philadelphia chromosome is seen in:", context=None,
    options=["CLL", "Hairy cell leukemia", "Hodgkin lymphoma", "CML"], answer="D", rationale=None,
)
MEDQA = Record(
    id="medqa-1", dataset="medqa", question="Which artery is occluded?", context=None,
    options=["Left main", "LAD", "Right coronary artery", "Circumflex"], answer="C", rationale=None,
)
RADQA = Record(
    id="radqa-1", dataset="radqa", question="What is the size of the nodule?",
    context="FINDINGS: There is a 9 mm nodule. No effusion.", options=None, answer="a 9 mm nodule",
    rationale="Stated in FINDINGS.",
)
RADQA_NONE = Record(
    id="radqa-2", dataset="radqa", question="Is there a pneumothorax?",
    context="FINDINGS: There is a 9 mm nodule. No effusion.", options=None, answer="", rationale=None,
)
ALL = [PUBMED, MCQA, MEDQA, RADQA, RADQA_NONE]
