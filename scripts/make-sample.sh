#!/usr/bin/env bash
# Generate the demo source: 20 s of 1280x720 @ 30 fps with motion and colour, plus a stereo tone.
# Nothing large is kept in git: this makes it in a few seconds from FFmpeg's lavfi sources.
set -euo pipefail
out="${1:-samples/demo.mp4}"
mkdir -p "$(dirname "$out")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30,hue=H=2*PI*t/20:s=1.2" \
  -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
  -f lavfi -i "sine=frequency=660:sample_rate=48000" \
  -filter_complex "[1:a][2:a]join=inputs=2:channel_layout=stereo[a]" \
  -map 0:v -map "[a]" -t 20 \
  -c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p \
  -c:a aac -b:a 192k -metadata:s:a:0 language=eng \
  -movflags +faststart "$out.tmp.mp4"
mv "$out.tmp.mp4" "$out"
echo "sample: $out"
