"""Feature names of the synthetic cohort, in the style of UK Biobank variables.

Kept apart from the generator so the generator reads as its generative model.
"""

from __future__ import annotations

CLINICAL_MARKERS: tuple[str, ...] = (
    "albumin", "alkaline_phosphatase", "alanine_aminotransferase", "apolipoprotein_a",
    "apolipoprotein_b", "aspartate_aminotransferase", "c_reactive_protein", "calcium",
    "cholesterol", "creatinine", "cystatin_c", "gamma_glutamyltransferase", "glucose",
    "hba1c", "hdl_cholesterol", "igf1", "ldl_direct", "lipoprotein_a", "phosphate",
    "shbg", "total_bilirubin", "total_protein", "triglycerides", "urate", "urea",
    "vitamin_d", "white_blood_cell_count", "red_blood_cell_count", "haemoglobin",
    "mean_corpuscular_volume", "platelet_count", "lymphocyte_percentage",
    "neutrophil_count", "red_cell_distribution_width", "systolic_bp", "diastolic_bp",
    "pulse_rate", "bmi", "waist_circumference", "grip_strength", "fev1", "fvc",
)
# markers whose population distribution is right-skewed: generated on the log scale
LOG_SCALE_MARKERS: frozenset[str] = frozenset({
    "alanine_aminotransferase", "aspartate_aminotransferase", "c_reactive_protein",
    "gamma_glutamyltransferase", "lipoprotein_a", "triglycerides", "igf1", "shbg",
    "total_bilirubin", "white_blood_cell_count", "neutrophil_count",
})
NMR_CLASSES: tuple[str, ...] = ("xl_vldl", "l_vldl", "m_vldl", "s_vldl", "idl", "l_ldl",
                                "m_ldl", "s_ldl", "xl_hdl", "l_hdl", "m_hdl", "s_hdl")
NMR_MEASURES: tuple[str, ...] = ("p", "l", "pl", "c", "ce")

IMAGING_BLOCKS: tuple[tuple[str, int], ...] = (
    ("brain_grey_matter_volume", 96), ("brain_white_matter_hyperintensity", 16),
    ("brain_cortical_thickness", 96), ("brain_subcortical_volume", 32),
    ("brain_dti_fa", 96), ("dxa_bone_density", 32), ("dxa_lean_mass", 16),
    ("retina_layer_thickness", 64), ("carotid_imt", 8), ("cardiac_mri", 56),
)

PRS_TRAITS: tuple[str, ...] = ("longevity", "coronary_artery_disease", "type2_diabetes",
                               "alzheimers", "bmi", "ldl", "systolic_bp", "educational_attainment",
                               "height", "parental_lifespan")

LIFESTYLE_CATEGORICAL: dict[str, tuple[int, ...]] = {
    "sex": (0, 1),
    "smoking_status": (0, 1, 2),            # never, former, current
    "alcohol_frequency": (1, 2, 3, 4, 5, 6),  # daily ... never
    "diet_pattern": (0, 1, 2, 3),
    "education": (1, 2, 3, 4, 5),
    "employment": (0, 1, 2, 3),
}
LIFESTYLE_NUMERIC: tuple[str, ...] = (
    "physical_activity_met", "sleep_hours", "tv_hours", "computer_hours", "walking_days",
    "moderate_activity_days", "vigorous_activity_days", "fruit_portions", "vegetable_portions",
    "oily_fish_freq", "processed_meat_freq", "red_meat_freq", "cheese_freq", "salt_added",
    "tea_cups", "coffee_cups", "water_glasses", "pack_years", "alcohol_units_week",
    "social_visits_freq", "loneliness_score", "neuroticism_score", "townsend_index",
    "household_income_band", "time_outdoors_summer", "time_outdoors_winter",
    "screen_time_total", "bread_slices", "cereal_bowls", "sun_protection",
)


def clinical_names(width: int) -> list[str]:
    nmr = [f"nmr_{c}_{m}" for c in NMR_CLASSES for m in NMR_MEASURES]
    names = list(CLINICAL_MARKERS) + nmr
    if width > len(names):
        names += [f"nmr_metabolite_{i}" for i in range(width - len(names))]
    return names[:width]


def imaging_names(width: int) -> list[str]:
    names = [f"{block}_{i:03d}" for block, n in IMAGING_BLOCKS for i in range(n)]
    if width > len(names):
        names += [f"imaging_idp_{i:04d}" for i in range(width - len(names))]
    return names[:width]


def genetic_names(width: int) -> list[str]:
    prs = [f"prs_{t}" for t in PRS_TRAITS][: min(len(PRS_TRAITS), width)]
    snps = [f"rs{1000 + 7919 * i % 9_000_000}" for i in range(width - len(prs))]
    return prs + snps


def lifestyle_numeric_names(width: int) -> list[str]:
    names = list(LIFESTYLE_NUMERIC)
    if width > len(names):
        names += [f"diet_item_{i:02d}" for i in range(width - len(names))]
    return names[:width]
