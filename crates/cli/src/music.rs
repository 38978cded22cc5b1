//! Notes out of piano rolls and soprano tokens, written as Standard MIDI files (`midly`), piano
//! roll pictures (PNG through `plotters`) and plain-text scores.
//!
//! Time is counted in steps of the source grid (a 16th note, an 8th or a quarter); the MIDI file
//! has [`TICKS_PER_BEAT`] ticks per quarter-note beat, so a step is `TICKS_PER_BEAT /
//! steps_per_beat` ticks.
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use remanence_tasks::soprano::{pitch_name, Token};

/// MIDI ticks per quarter-note beat.
pub const TICKS_PER_BEAT: u16 = 480;
/// Velocity of every note.
const VELOCITY: u8 = 80;

/// One note: a MIDI pitch sounding from step `onset` for `duration` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    pub onset: u32,
    pub pitch: u8,
    pub duration: u32,
}

/// The notes of a piano roll (bit k of a frame = pitch `lowest_pitch + k`): a pitch sounding on
/// consecutive frames is one held note (the roll has no articulation). Sorted by onset, pitch.
pub fn notes_from_roll(frames: &[u128], lowest_pitch: u8) -> Vec<Note> {
    let mut notes = Vec::new();
    for k in 0..128 - lowest_pitch as usize {
        let mut start = None;
        for (t, &f) in frames.iter().chain(std::iter::once(&0)).enumerate() {
            let on = f >> k & 1 == 1;
            match (on, start) {
                (true, None) => start = Some(t),
                (false, Some(s)) => {
                    notes.push(Note {
                        onset: s as u32,
                        pitch: lowest_pitch + k as u8,
                        duration: (t - s) as u32,
                    });
                    start = None;
                }
                _ => {}
            }
        }
    }
    notes.sort();
    notes
}

/// The notes of a soprano token sequence (`remanence_tasks::soprano`): an onset starts a note,
/// a hold lengthens the sounding one and a rest ends it. A hold with nothing sounding (at the
/// start or after a rest, which a sampled line may produce) is silence.
pub fn notes_from_tokens(tokens: &[u32]) -> Vec<Note> {
    let mut notes = Vec::new();
    let mut sounding: Option<Note> = None;
    for (t, &tok) in tokens.iter().enumerate() {
        match Token::from_index(tok) {
            Token::Hold => {
                if let Some(n) = sounding.as_mut() {
                    n.duration += 1;
                }
            }
            Token::Rest => notes.extend(sounding.take()),
            Token::Note(p) => {
                notes.extend(sounding.take());
                sounding = Some(Note {
                    onset: t as u32,
                    pitch: p,
                    duration: 1,
                });
            }
        }
    }
    notes.extend(sounding);
    notes
}

/// A plain-text score: a header line, then one line per note: onset step, duration in steps
/// (16ths for the soprano) and pitch name (`C5`).
pub fn score_text(notes: &[Note], step_name: &str) -> String {
    let mut s = format!("# onset duration pitch (times in {step_name} steps; C4 = MIDI 60)\n");
    for n in notes {
        s.push_str(&format!(
            "{} {} {}\n",
            n.onset,
            n.duration,
            pitch_name(n.pitch as i64)
        ));
    }
    s
}

/// A format-0 Standard MIDI file of `notes` on channel 0: `steps_per_beat` steps per quarter
/// note (4 for 16ths, 1 for quarters), tempo `bpm`, 4/4.
pub fn midi_bytes(notes: &[Note], steps_per_beat: u32, bpm: f64) -> Result<Vec<u8>> {
    if steps_per_beat == 0 || !TICKS_PER_BEAT.is_multiple_of(steps_per_beat as u16) {
        bail!("{steps_per_beat} steps per beat do not divide {TICKS_PER_BEAT} ticks");
    }
    if !(bpm > 0.0 && bpm.is_finite()) {
        bail!("tempo must be a positive number of beats per minute, got {bpm}");
    }
    let tick = (TICKS_PER_BEAT as u32 / steps_per_beat) as u64;
    // (tick, 0 = off before 1 = on at the same tick, pitch)
    let mut events: Vec<(u64, u8, u8)> = Vec::with_capacity(2 * notes.len());
    for n in notes {
        if n.pitch > 127 || n.duration == 0 {
            bail!("note {n:?}: pitch must be 0..=127 and the duration at least one step");
        }
        events.push((n.onset as u64 * tick, 1, n.pitch));
        events.push(((n.onset + n.duration) as u64 * tick, 0, n.pitch));
    }
    events.sort();
    let channel = u4::new(0);
    let micros_per_beat = (60_000_000.0 / bpm).round() as u32;
    let mut track = vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(micros_per_beat))),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8)),
        },
    ];
    let mut now = 0u64;
    for (at, on, pitch) in events {
        let delta = u32::try_from(at - now).context("a note lies too far from the previous")?;
        now = at;
        let key = u7::new(pitch);
        let message = if on == 1 {
            MidiMessage::NoteOn {
                key,
                vel: u7::new(VELOCITY),
            }
        } else {
            MidiMessage::NoteOff {
                key,
                vel: u7::new(0),
            }
        };
        track.push(TrackEvent {
            delta: u28::new(delta),
            kind: TrackEventKind::Midi { channel, message },
        });
    }
    track.push(TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    let smf = Smf {
        header: Header::new(
            Format::SingleTrack,
            Timing::Metrical(u15::new(TICKS_PER_BEAT)),
        ),
        tracks: vec![track],
    };
    let mut out = Vec::new();
    smf.write_std(&mut out)?;
    Ok(out)
}

/// Writes [`midi_bytes`] to `path` (a temporary name, then renamed).
pub fn write_midi(path: &Path, notes: &[Note], steps_per_beat: u32, bpm: f64) -> Result<()> {
    let bytes = midi_bytes(notes, steps_per_beat, bpm)?;
    remanence_cells::io::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The notes of a MIDI file (every track, every channel), in steps of `TICKS_PER_BEAT /
/// steps_per_beat` ticks, with its tempo in beats per minute (the first tempo event).
#[cfg(test)]
pub fn read_midi(bytes: &[u8], steps_per_beat: u32) -> Result<(Vec<Note>, Option<f64>)> {
    let smf = Smf::parse(bytes).map_err(|e| anyhow!("not a MIDI file: {e}"))?;
    let Timing::Metrical(tpb) = smf.header.timing else {
        bail!("the MIDI file counts time in SMPTE frames, not ticks per beat");
    };
    let tick = (tpb.as_int() as u32 / steps_per_beat) as u64;
    let mut notes = Vec::new();
    let mut tempo = None;
    for track in &smf.tracks {
        let mut now = 0u64;
        let mut open: [Option<u64>; 128] = [None; 128];
        for ev in track {
            now += ev.delta.as_int() as u64;
            match ev.kind {
                TrackEventKind::Meta(MetaMessage::Tempo(t)) if tempo.is_none() => {
                    tempo = Some(60_000_000.0 / t.as_int() as f64)
                }
                TrackEventKind::Midi { message, .. } => {
                    let (key, on) = match message {
                        MidiMessage::NoteOn { key, vel } => (key.as_int(), vel.as_int() > 0),
                        MidiMessage::NoteOff { key, .. } => (key.as_int(), false),
                        _ => continue,
                    };
                    if on {
                        open[key as usize] = Some(now);
                    } else if let Some(start) = open[key as usize].take() {
                        notes.push(Note {
                            onset: (start / tick) as u32,
                            pitch: key,
                            duration: ((now - start) / tick) as u32,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    notes.sort();
    Ok((notes, tempo))
}

/// Size in pixels of the piano-roll picture of `steps` steps over pitches `low..=high`.
pub fn roll_png_size(steps: u32, low: u8, high: u8) -> (u32, u32) {
    let px = (1200 / steps.max(1)).clamp(2, 16);
    let rows = (high.max(low) - low) as u32 + 1;
    (steps.max(1) * px + 2 * MARGIN, rows * ROW + 2 * MARGIN)
}

const MARGIN: u32 = 8;
const ROW: u32 = 8;

/// A piano-roll picture of `notes` over `steps` steps: time to the right, pitch upwards (the
/// pitch range of the notes, two semitones of room each side), black keys' lanes grey, a line
/// under each C, a bar line every `steps_per_bar` steps, the first `primer_steps` steps (the
/// primer, not sampled) shaded yellow, notes as blue bars. No text: it needs no fonts. Written
/// to a temporary `.png` name, then renamed.
pub fn write_roll_png(
    path: &Path,
    notes: &[Note],
    steps: u32,
    steps_per_bar: u32,
    primer_steps: u32,
) -> Result<()> {
    use plotters::prelude::*;
    let lo = notes
        .iter()
        .map(|n| n.pitch)
        .min()
        .unwrap_or(60)
        .saturating_sub(2);
    let hi = notes
        .iter()
        .map(|n| n.pitch)
        .max()
        .unwrap_or(72)
        .saturating_add(2)
        .min(127);
    let (w, h) = roll_png_size(steps, lo, hi);
    let px = ((w - 2 * MARGIN) / steps.max(1)) as i32;
    let (m, row) = (MARGIN as i32, ROW as i32);
    // Top edge of a pitch's row.
    let y = |p: u8| m + (hi - p) as i32 * row;
    let x = |t: u32| m + t as i32 * px;
    let tmp = path.with_extension(format!("tmp-{}.png", std::process::id()));
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(&tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let right = x(steps);
        for p in lo..=hi {
            if matches!(p % 12, 1 | 3 | 6 | 8 | 10) {
                root.draw(&Rectangle::new(
                    [(m, y(p)), (right, y(p) + row)],
                    RGBColor(236, 236, 236).filled(),
                ))?;
            }
        }
        if primer_steps > 0 {
            root.draw(&Rectangle::new(
                [(m, m), (x(primer_steps.min(steps)), y(lo) + row)],
                RGBColor(255, 244, 200).mix(0.8).filled(),
            ))?;
        }
        for p in lo..=hi {
            if p % 12 == 0 {
                let yb = y(p) + row;
                root.draw(&PathElement::new(
                    vec![(m, yb), (right, yb)],
                    RGBColor(150, 150, 150),
                ))?;
            }
        }
        let mut t = 0;
        while t <= steps {
            root.draw(&PathElement::new(
                vec![(x(t), m), (x(t), y(lo) + row)],
                RGBColor(120, 120, 120),
            ))?;
            t += steps_per_bar.max(1);
        }
        for n in notes.iter().filter(|n| (lo..=hi).contains(&n.pitch)) {
            let (x0, x1) = (x(n.onset), x((n.onset + n.duration).min(steps)));
            let (y0, y1) = (y(n.pitch) + 1, y(n.pitch) + row - 1);
            root.draw(&Rectangle::new(
                [(x0 + 1, y0), (x1 - 1, y1)],
                RGBColor(40, 90, 200).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(x0 + 1, y0), (x1 - 1, y1)],
                RGBColor(10, 30, 90),
            ))?;
        }
        root.present()?;
        Ok(())
    };
    let res = draw()
        .map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use remanence_tasks::soprano::{HOLD, REST};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("remanence-music-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn tokens_and_rolls_become_notes() {
        let n = |p: u8| Token::Note(p).index();
        let t = [HOLD, n(60), HOLD, REST, HOLD, n(62), n(64), HOLD, HOLD];
        assert_eq!(
            notes_from_tokens(&t),
            vec![
                Note {
                    onset: 1,
                    pitch: 60,
                    duration: 2
                },
                Note {
                    onset: 5,
                    pitch: 62,
                    duration: 1
                },
                Note {
                    onset: 6,
                    pitch: 64,
                    duration: 3
                },
            ]
        );
        // Key 39 (C4) on in frames 0-1, key 43 (E4) in frames 1 and 3 (to the end).
        let frames = [1u128 << 39, 1 << 39 | 1 << 43, 0, 1 << 43];
        assert_eq!(
            notes_from_roll(&frames, 21),
            vec![
                Note {
                    onset: 0,
                    pitch: 60,
                    duration: 2
                },
                Note {
                    onset: 1,
                    pitch: 64,
                    duration: 1
                },
                Note {
                    onset: 3,
                    pitch: 64,
                    duration: 1
                },
            ]
        );
        let s = score_text(&notes_from_tokens(&t), "16th");
        assert_eq!(s.lines().nth(1), Some("1 2 C4"));
        assert_eq!(s.lines().nth(3), Some("6 3 E4"));
    }

    #[test]
    fn a_written_midi_file_reads_back_to_the_same_notes() {
        let notes = vec![
            Note {
                onset: 0,
                pitch: 60,
                duration: 4,
            },
            Note {
                onset: 0,
                pitch: 67,
                duration: 2,
            },
            // Same pitch right after the first ends: the off must come before the on.
            Note {
                onset: 4,
                pitch: 60,
                duration: 1,
            },
            Note {
                onset: 9,
                pitch: 81,
                duration: 7,
            },
        ];
        let dir = temp_dir("midi");
        for spb in [1, 2, 4] {
            let path = dir.join(format!("x{spb}.mid"));
            write_midi(&path, &notes, spb, 100.0).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..4], b"MThd");
            let (back, tempo) = read_midi(&bytes, spb).unwrap();
            assert_eq!(back, notes, "{spb} steps per beat");
            assert!((tempo.unwrap() - 100.0).abs() < 1e-3);
            // The step is 480 / spb ticks: read at one step per beat, onsets scale down.
            let (beats, _) = read_midi(&bytes, 1).unwrap();
            assert_eq!(beats[3].onset, 9 / spb);
        }
        assert!(midi_bytes(&notes, 7, 100.0).is_err());
        assert!(midi_bytes(&notes, 4, f64::NAN).is_err());
        assert!(read_midi(b"not midi", 4).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_piano_roll_png_is_written_whole() {
        let notes = vec![
            Note {
                onset: 0,
                pitch: 60,
                duration: 4,
            },
            Note {
                onset: 4,
                pitch: 72,
                duration: 8,
            },
        ];
        let dir = temp_dir("png");
        let path = dir.join("roll.png");
        write_roll_png(&path, &notes, 32, 16, 4).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        let (w, h) = roll_png_size(32, 58, 74);
        assert_eq!((be(&bytes[16..20]), be(&bytes[20..24])), (w, h));
        assert_eq!((w, h), (32 * 16 + 16, 17 * 8 + 16));
        assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
        // Nothing is left under a temporary name.
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
