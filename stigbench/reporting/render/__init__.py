"""What every report renders with: number formats, metric names, Markdown, LaTeX, self-contained
HTML and the figures' matplotlib set-up. Pure: frames and values in, text or files out."""
