"""Shaped like bokeh's export_csv example: a RangeSlider filters a table in Python, a Button runs CustomJS."""
import numpy as np
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, ColumnDataSource, CustomJS, DataTable, Div, RangeSlider, TableColumn

salaries = np.arange(10_000, 110_000, 1_000)  # 100 employees
names = [f"employee {i}" for i in range(len(salaries))]
source = ColumnDataSource(data={"name": [], "salary": []}, name="table_source")
slider = RangeSlider(title="Max Salary", start=10_000, end=110_000, value=(10_000, 50_000), step=1_000,
                     name="slider", css_classes=["salary"])
count = Div(name="count", css_classes=["count"])
exported = Div(text="nothing exported", name="exported", css_classes=["exported"])


def update():
    low, high = slider.value
    keep = (salaries >= low) & (salaries <= high)
    source.data = {"name": [n for n, k in zip(names, keep) if k], "salary": salaries[keep]}
    count.text = f"rows={int(keep.sum())}"


slider.on_change("value", lambda attr, old, new: update())
button = Button(label="Download", button_type="success", css_classes=["download"])
button.js_on_event("button_click", CustomJS(args={"source": source, "out": exported}, code="""
    const rows = source.data.name.map((n, i) => `${n},${source.data.salary[i]}`)
    out.text = `csv rows=${rows.length}`
"""))
table = DataTable(source=source, columns=[TableColumn(field="name", title="Name"),
                                          TableColumn(field="salary", title="Salary")], width=400)
update()
curdoc().add_root(column(slider, button, count, exported, table))
curdoc().title = "Export CSV"
