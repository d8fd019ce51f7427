"""The tour's sections, in the write-up's order: id, part, title, caption, the model role and the function."""

from __future__ import annotations

from fundiff.tour import part_a, part_b
from fundiff.tour.state import Section

SECTIONS: tuple[Section, ...] = (
    Section(
        "a-forward", "A", "1.1 The forward process",
        "A test image noised by q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) at the write-up's t = 250, 500, 750 "
        "of 1000, scaled to the model's T.",
        "class", part_a.forward,
    ),
    Section(
        "a-blur", "A", "1.2 Classical denoising",
        "The same noisy images smoothed with a Gaussian blur (the technique's kernel 5, σ = 1): the noise fades, "
        "and so does the digit.",
        "class", part_a.blur,
    ),
    Section(
        "a-denoise", "A", "1.3–1.4 One-step and iterative denoising",
        "One-step estimates x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, then strided iterative denoising from "
        "timesteps[i_start], compared with blur.",
        "class", part_a.denoise,
    ),
    Section(
        "a-sampling", "A", "1.5 Sampling",
        "Samples from pure noise x_T ~ N(0, I) with the null prompt, by strided steps: digit-like, "
        "but not always a clear digit.",
        "class", part_a.sampling,
    ),
    Section(
        "a-cfg", "A", "1.6 Classifier-free guidance",
        "The same noise sampled per prompt without guidance (s = 1) and with CFG s = 5: "
        "ε = ε_u + s (ε_c − ε_u) gives cleaner, more typical images.",
        "class", part_a.cfg,
    ),
    Section(
        "a-sdedit", "A", "1.7 SDEdit (image-to-image translation)",
        "The test image noised to timesteps[i_start] and denoised with the null prompt: a small i_start "
        "invents a new image, a large one keeps the input.",
        "class", part_a.sdedit,
    ),
    Section(
        "a-handdrawn", "A", "1.7.1 Editing hand-drawn images",
        "fundiff's shipped drawings (resized, inverted to light-on-dark) projected onto the data manifold by SDEdit.",
        "class", part_a.handdrawn,
    ),
    Section(
        "a-inpaint", "A", "1.7.2 Inpainting",
        "New content where the mask is white; after every step the rest is replaced by the original noised "
        "to t′ (the write-up's method).",
        "class", part_a.inpaint,
    ),
    Section(
        "a-repaint", "A", "1.7.2 Inpainting with RePaint",
        "The same with RePaint's resampling (Lugmayr et al. 2022): jumping back up a few steps lets the new "
        "part agree with the kept part.",
        "class", part_a.repaint,
    ),
    Section(
        "a-img2img", "A", "1.7.3 Conditioned image-to-image translation",
        "SDEdit of the test image towards a prompt with CFG s = 5: the edit bends the input towards the "
        "prompt's class.",
        "class", part_a.img2img,
    ),
    Section(
        "a-anagram", "A", "1.8 Visual anagrams",
        "One image that shows one prompt as is and another under a view: "
        "ε = mean_i V_i⁻¹(ε(V_i(x_t), p_i)) (Geng et al. 2024).",
        "class", part_a.anagram,
    ),
    Section(
        "a-hybrid", "A", "1.9 Hybrid images",
        "Low frequencies of one prompt, high frequencies of another: "
        "ε = lowpass(ε(x_t, low)) + highpass(ε(x_t, high)) (factorized diffusion, Geng et al. 2024).",
        "class", part_a.hybrid,
    ),
    Section(
        "a-hybrid-bands", "A", "1.9 Hybrid images of three prompts",
        "Factorized diffusion's three bands, which sum to the whole: ε = G_low ε(low) + (G_mid − G_low) ε(mid) + "
        "(I − G_mid) ε(high); a third prompt seen at a middle distance (the mid filter, kernel 5 and σ 0.75, is "
        "chosen, not measured).",
        "class", part_a.hybrid_bands,
    ),
    Section(
        "t-cfg", "T", "1.5–1.6 Text to image, with classifier-free guidance",
        "fundiff's emoji model (32x32 colour, trained on a CPU) sampled from the write-up's prompts with CFG "
        "s = 5; each prompt is a bag of words (fundiff.text), so any phrasing of known words works.",
        "emoji", part_a.text_cfg,
    ),
    Section(
        "t-sdedit", "T", "1.7 SDEdit of a test image",
        "A shipped tower emoji plays the Campanile's part: noised to timesteps[i_start] and denoised with the "
        "null prompt.",
        "emoji", part_a.text_sdedit,
    ),
    Section(
        "t-handdrawn", "T", "1.7.1 Editing a drawing",
        "A simple colour drawing of a sun, projected onto the emoji manifold by SDEdit.",
        "emoji", part_a.text_handdrawn,
    ),
    Section(
        "t-inpaint", "T", "1.7.2 Inpainting with a prompt",
        "The tower's top half regenerated with the prompt 'a fire'; the bottom half is kept.",
        "emoji", part_a.text_inpaint,
    ),
    Section(
        "t-img2img", "T", "1.7.3 The tower towards 'a rocket ship'",
        "SDEdit of the tower with the prompt 'a rocket ship' and CFG s = 5, as the write-up turns the "
        "Campanile into a rocket.",
        "emoji", part_a.text_img2img,
    ),
    Section(
        "t-anagram", "T", "1.8 An old man and fire",
        "The write-up's anagram at emoji scale: 'an old man' as is, 'fire' upside down (the campfire's part).",
        "emoji", part_a.text_anagram,
    ),
    Section(
        "t-hybrid", "T", "1.9 A skull far away, a water wave up close",
        "The write-up's hybrid (skull and waterfall) with the emoji the model knows: low frequencies of "
        "'a skull', high of 'a water wave'.",
        "emoji", part_a.text_hybrid,
    ),
    Section(
        "b-noising", "B", "B 1.2 The noising process",
        "Test digits noised as z = x + σ ε at σ ∈ {0, 0.2, 0.4, 0.5, 0.6, 0.8, 1}: the one-step denoiser's "
        "training inputs (σ = 0.5) and beyond.",
        "denoiser", part_b.noising,
    ),
    Section(
        "b-denoiser", "B", "B 1.2.1 Training the one-step denoiser",
        "The UNet trained to map z (σ = 0.5) back to x with an L2 loss, and its results on test digits.",
        "denoiser", part_b.denoiser,
    ),
    Section(
        "b-sweep", "B", "B 1.2.2 Out-of-distribution noise levels",
        "The same denoiser on σ it was not trained for; its PSNR against the best Gaussian blur per σ "
        "is in the table.",
        "denoiser", part_b.sweep,
    ),
    Section(
        "b-pure-noise", "B", "B 1.2.3 Training on pure noise",
        "A one-step denoiser trained on inputs that are pure noise (--pure-noise, the course's flow-matching "
        "edition), on a few thousand training images so the tour trains it in seconds: its input says nothing "
        "about the image, and under an MSE loss the best constant prediction is the mean, so after a few epochs "
        "it draws the training set's average image whatever the noise.",
        "denoiser", part_b.pure_noise,
    ),
    Section(
        "b-time", "B", "B 2.1–2.3 The time-conditioned UNet",
        "The time-conditioned UNet sampled from pure noise: digits of every class, in no chosen order. The "
        "write-up trains it as DDPM, ε(x_t, t) with T = 300 (--preset paper); the shipped model is trained by "
        "flow matching (--preset flow, the course's newer Part B), as its card below says.",
        "time", part_b.time,
    ),
    Section(
        "b-class", "B", "B 2.4–2.5 The class-conditioned UNet",
        "The class-conditioned UNet, trained with 10% of class vectors dropped so that one model is both "
        "conditional and unconditional: ε(x_t, t, c) by DDPM in the write-up (--preset paper), a velocity "
        "u(x_τ, τ, c) by flow matching for the shipped model (its card below); sampled per class without and "
        "with CFG s = 5.",
        "class-b", part_b.class_model,
    ),
    Section(
        "b-fast", "B", "Beyond the write-up: a two-step student",
        "The shipped class model distilled by `fundiff distill`: the teacher samples 10,000 images with CFG s = 2, "
        "and the student learns the straight path from each starting noise to its image (reflow), with the "
        "guidance built in. It samples in 2 model calls an image, not the teacher's 69 CFG pairs, at its own s = 2.",
        "fast", part_b.fast,
    ),
)  # fmt: skip
SECTION_IDS = tuple(s.id for s in SECTIONS)
