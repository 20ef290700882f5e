//! Drawing shared by the plots: a curve with markers and its legend entry, and the legend box.

use plotters::coord::CoordTranslate;
use plotters::prelude::*;

/// Draws `points` as a line of `colour` with a dot at each point, labelled `label` in the
/// legend (a line swatch).
pub(crate) fn draw_marked_line<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    points: &[(f64, f64)],
    colour: RGBColor,
    label: &str,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            colour.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2)));
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws the legend of the series labelled so far: a white box with a thin border at
/// `position`, in `font`.
pub(crate) fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font: (&str, u32),
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(font)
        .draw()
        .map_err(|e| e.to_string())
}
