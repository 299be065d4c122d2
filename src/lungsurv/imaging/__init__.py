"""Images, one patient at a time: DICOM reading, DICOM zips, conversion to 1 mm, peritumoral
rings and QA pictures. Science: imports only core and cohort."""
